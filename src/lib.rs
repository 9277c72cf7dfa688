//! medgate
