//! Exact structural comparison of two JSON values, reporting each difference by JSON path.
//!
//! The verifier serialises what it recomputed and what the bundle recorded to
//! [`serde_json::Value`] and compares them here, so a discrepancy is named the way an auditor
//! would look it up (`$.statistics.overall.sensitivity.lower`) with both values. Numbers are
//! compared exactly as IEEE-754 doubles (serde_json writes the shortest text that reads back to
//! the same double, so a faithful round trip is exact); integers as integers.

use serde::Serialize;
use serde_json::Value;

/// One difference between the recomputed (`expected`) and the recorded (`found`) value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Discrepancy {
    /// JSON path, e.g. `$.criteria[0].observations[1].tested`.
    pub path: String,
    /// The value medgate recomputed (`null` when the key should not exist).
    pub expected: Value,
    /// The value recorded in the bundle (`null` when the key is absent).
    pub found: Value,
    /// What kind of difference.
    pub kind: DiffKind,
}

/// What kind of difference a [`Discrepancy`] is; written `value`, `missing`, `unexpected`,
/// `length` in `medgate verify --format json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffKind {
    /// Both have the value and it differs.
    Value,
    /// The recorded value lacks it.
    Missing,
    /// The recorded value has it, the recomputation does not.
    Unexpected,
    /// Array lengths differ.
    Length,
}

impl DiffKind {
    /// The name as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Value => "value",
            DiffKind::Missing => "missing",
            DiffKind::Unexpected => "unexpected",
            DiffKind::Length => "length",
        }
    }
}

impl std::fmt::Display for DiffKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Appends `.key` (or `["key"]` when the key is not a plain identifier) to a path.
fn push_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_string()))
    }
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        // Bit-for-bit, except that 0.0 == -0.0 as numbers.
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Compares `expected` with `found` and appends every difference under `path`.
pub fn diff(path: &str, expected: &Value, found: &Value, out: &mut Vec<Discrepancy>) {
    match (expected, found) {
        (Value::Object(e), Value::Object(f)) => {
            for (k, ev) in e {
                let p = push_key(path, k);
                match f.get(k) {
                    Some(fv) => diff(&p, ev, fv, out),
                    // An absent key and an explicit null mean the same to serde's Option.
                    None if ev.is_null() => {}
                    None => out.push(Discrepancy {
                        path: p,
                        expected: ev.clone(),
                        found: Value::Null,
                        kind: DiffKind::Missing,
                    }),
                }
            }
            for (k, fv) in f {
                if !e.contains_key(k) && !fv.is_null() {
                    out.push(Discrepancy {
                        path: push_key(path, k),
                        expected: Value::Null,
                        found: fv.clone(),
                        kind: DiffKind::Unexpected,
                    });
                }
            }
        }
        (Value::Array(e), Value::Array(f)) => {
            if e.len() != f.len() {
                out.push(Discrepancy {
                    path: path.to_string(),
                    expected: Value::from(e.len()),
                    found: Value::from(f.len()),
                    kind: DiffKind::Length,
                });
            }
            for (i, (ev, fv)) in e.iter().zip(f).enumerate() {
                diff(&format!("{path}[{i}]"), ev, fv, out);
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            if !numbers_equal(a, b) {
                out.push(value_diff(path, expected, found));
            }
        }
        (a, b) => {
            if a != b {
                out.push(value_diff(path, expected, found));
            }
        }
    }
}

fn value_diff(path: &str, expected: &Value, found: &Value) -> Discrepancy {
    Discrepancy {
        path: path.to_string(),
        expected: expected.clone(),
        found: found.clone(),
        kind: DiffKind::Value,
    }
}

/// Serialises both values and compares them (see [`diff`]).
pub fn diff_serialized<A: Serialize, B: Serialize>(
    path: &str,
    expected: &A,
    found: &B,
    out: &mut Vec<Discrepancy>,
) -> crate::Result<()> {
    let e = serde_json::to_value(expected)
        .map_err(|e| crate::Error::Internal(format!("serialise: {e}")))?;
    let f = serde_json::to_value(found)
        .map_err(|e| crate::Error::Internal(format!("serialise: {e}")))?;
    diff(path, &e, &f, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(e: Value, f: Value) -> Vec<Discrepancy> {
        let mut out = Vec::new();
        diff("$", &e, &f, &mut out);
        out
    }

    #[test]
    fn identical_values_have_no_difference() {
        let v = json!({"a": [1, 2.5, {"b": null}], "c": "x"});
        assert!(run(v.clone(), v).is_empty());
    }

    #[test]
    fn a_changed_number_is_named_by_path() {
        let d = run(
            json!({"statistics": {"overall": {"sensitivity": {"lower": 0.812}}}}),
            json!({"statistics": {"overall": {"sensitivity": {"lower": 0.813}}}}),
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "$.statistics.overall.sensitivity.lower");
        assert_eq!(d[0].expected, json!(0.812));
        assert_eq!(d[0].found, json!(0.813));
    }

    #[test]
    fn arrays_report_length_and_element_paths() {
        let d = run(
            json!({"c": [{"v": 1}, {"v": 2}]}),
            json!({"c": [{"v": 1}, {"v": 3}, {"v": 4}]}),
        );
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["$.c", "$.c[1].v"]);
        assert_eq!(d[0].kind, DiffKind::Length);
    }

    #[test]
    fn missing_and_unexpected_keys_are_reported_but_absent_equals_null() {
        let d = run(json!({"a": 1, "n": null}), json!({"b": 2}));
        let got: Vec<(&str, &str)> = d
            .iter()
            .map(|d| (d.path.as_str(), d.kind.as_str()))
            .collect();
        assert_eq!(got, [("$.a", "missing"), ("$.b", "unexpected")]);
    }

    #[test]
    fn integer_and_float_forms_compare_by_value_and_odd_keys_are_quoted() {
        assert!(run(json!(1), json!(1)).is_empty());
        assert_eq!(run(json!(0.1 + 0.2), json!(0.3)).len(), 1);
        assert_eq!(push_key("$", "fn"), "$.fn");
        assert_eq!(push_key("$", "sex x age"), "$[\"sex x age\"]");
    }
}
