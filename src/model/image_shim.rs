//! TEMPORARY stand-in for `crate::golden::image` until the golden branch is merged.

use std::path::Path;

use crate::error::{Error, Result};

/// A decoded image.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channels per pixel.
    pub channels: u32,
    /// Interleaved row-major samples in [0, 1].
    pub data: Vec<f32>,
}

/// Loads a PNG/JPEG.
pub fn load_image(path: &Path) -> Result<LoadedImage> {
    let img = image::open(path).map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
    let g = img.to_luma32f();
    Ok(LoadedImage {
        width: g.width(),
        height: g.height(),
        channels: 1,
        data: g.into_raw(),
    })
}
