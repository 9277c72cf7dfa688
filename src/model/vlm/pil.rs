//! Pillow's resampling of 8-bit images, bit for bit: the reference image processors of
//! Hugging Face (`*ImageProcessorPil`) resize with `PIL.Image.resize`, so a model fed
//! differently resized pixels would not be the model that was validated upstream.
//!
//! This is Pillow's `Resample.c` for 8 bits per channel: separable (horizontal pass, then
//! vertical), antialiased (the kernel widens by the scale when downsampling), coefficients
//! normalised in f64 and rounded to fixed point with 22 fractional bits, each pass rounded and
//! clipped to 0..=255. Pillow returns an unchanged copy when the size does not change.

/// Pillow's resampling filters used by image processors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BICUBIC` (3): Keys cubic with a = -0.5, support 2.
    Bicubic,
    /// `Image.BILINEAR` (2): triangle, support 1.
    Bilinear,
}

impl Filter {
    /// From a processor config's `resample` number.
    pub fn from_pil(n: u64) -> Option<Filter> {
        match n {
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Bilinear => 1.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bicubic => {
                let a = -0.5;
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output index: first input index, and the fixed-point weights.
fn coeffs(in_size: usize, out_size: usize, filter: Filter) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let mut out = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut k: Vec<f64> = (0..n)
            .map(|x| filter.eval((x as f64 + xmin as f64 - center + 0.5) * ss))
            .collect();
        let ww: f64 = k.iter().sum();
        if ww != 0.0 {
            for v in &mut k {
                *v /= ww;
            }
        }
        let fixed = k
            .iter()
            .map(|&v| {
                let s = v * f64::from(1u32 << PRECISION_BITS);
                if v < 0.0 {
                    (-0.5 + s) as i32
                } else {
                    (0.5 + s) as i32
                }
            })
            .collect();
        out.push((xmin, fixed));
    }
    out
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes interleaved 8-bit `data` (`w * h * channels`) to `nw x nh` as Pillow does.
pub fn resize_u8(
    data: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    nw: usize,
    nh: usize,
    filter: Filter,
) -> Vec<u8> {
    if (w, h) == (nw, nh) {
        return data.to_vec();
    }
    let hc = coeffs(w, nw, filter);
    let vc = coeffs(h, nh, filter);
    // Rows of the source the vertical pass will read.
    let ybox_first = vc.first().map(|c| c.0).unwrap_or(0);
    let ybox_last = vc.last().map(|c| c.0 + c.1.len()).unwrap_or(h);
    let need_h = nw != w;
    let need_v = nh != h;
    let (tmp, tw, th, row0) = if need_h {
        let rows = ybox_last - ybox_first;
        let mut t = vec![0u8; nw * rows * channels];
        for y in 0..rows {
            let src = &data[(y + ybox_first) * w * channels..];
            for (xx, (xmin, k)) in hc.iter().enumerate() {
                for c in 0..channels {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (x, &kv) in k.iter().enumerate() {
                        ss += i64::from(src[(x + xmin) * channels + c]) * i64::from(kv);
                    }
                    t[(y * nw + xx) * channels + c] = clip8(ss);
                }
            }
        }
        (t, nw, rows, ybox_first)
    } else {
        (data.to_vec(), w, h, 0)
    };
    if !need_v {
        return tmp;
    }
    let mut out = vec![0u8; tw * nh * channels];
    for (yy, (ymin, k)) in vc.iter().enumerate() {
        let ymin = ymin - row0;
        for x in 0..tw {
            for c in 0..channels {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (y, &kv) in k.iter().enumerate() {
                    ss += i64::from(tmp[((y + ymin) * tw + x) * channels + c]) * i64::from(kv);
                }
                out[(yy * tw + x) * channels + c] = clip8(ss);
            }
        }
    }
    let _ = th;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy_and_constant_images_stay_constant() {
        let d = vec![7u8; 5 * 4 * 3];
        assert_eq!(resize_u8(&d, 5, 4, 3, 5, 4, Filter::Bicubic), d);
        let up = resize_u8(&d, 5, 4, 3, 9, 13, Filter::Bicubic);
        assert_eq!(up.len(), 9 * 13 * 3);
        assert!(up.iter().all(|&v| v == 7));
        let down = resize_u8(&d, 5, 4, 3, 2, 1, Filter::Bilinear);
        assert!(down.iter().all(|&v| v == 7));
    }
}
