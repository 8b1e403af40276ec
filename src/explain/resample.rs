//! Image resampling the methods share: the blurred baseline of integrated gradients and
//! Grad-CAM's upsampling to the input's size.

use crate::data::IMAGE_SIDE;

/// `image` blurred by a Gaussian of `sigma` pixels, separably, with zeros outside (MNIST's
/// background) and the kernel cut at three sigma.
pub fn blur(image: &[f32], sigma: f64) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    let side = IMAGE_SIDE as isize;
    let pass = |src: &[f64], along_rows: bool| -> Vec<f64> {
        let mut out = vec![0.0; src.len()];
        for r in 0..side {
            for c in 0..side {
                let mut acc = 0.0;
                for (k, d) in (-radius..=radius).enumerate() {
                    let (rr, cc) = if along_rows { (r, c + d) } else { (r + d, c) };
                    if (0..side).contains(&rr) && (0..side).contains(&cc) {
                        acc += kernel[k] * src[(rr * side + cc) as usize];
                    }
                }
                out[(r * side + c) as usize] = acc / total;
            }
        }
        out
    };
    let x: Vec<f64> = image.iter().map(|&v| v as f64).collect();
    pass(&pass(&x, true), false)
        .iter()
        .map(|&v| v as f32)
        .collect()
}

/// `map` (`h x w`) resized to the 28x28 input bilinearly, with pixel centres aligned as
/// PyTorch's `interpolate(mode="bilinear", align_corners=False)` aligns them (edges clamped).
pub fn upsample_bilinear(map: &[f32], (h, w): (usize, usize)) -> Vec<f32> {
    let side = IMAGE_SIDE;
    let source = |dst: usize, len: usize| -> (usize, usize, f32) {
        let s = ((dst as f32 + 0.5) * len as f32 / side as f32 - 0.5).clamp(0.0, (len - 1) as f32);
        let lo = s.floor() as usize;
        (lo, (lo + 1).min(len - 1), s - lo as f32)
    };
    let mut out = vec![0.0; side * side];
    for r in 0..side {
        let (r0, r1, fr) = source(r, h);
        for c in 0..side {
            let (c0, c1, fc) = source(c, w);
            let at = |rr: usize, cc: usize| map[rr * w + cc];
            let top = at(r0, c0) * (1.0 - fc) + at(r0, c1) * fc;
            let bottom = at(r1, c0) * (1.0 - fc) + at(r1, c1) * fc;
            out[r * side + c] = top * (1.0 - fr) + bottom * fr;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_PIXELS;

    #[test]
    fn blur_keeps_the_ink_away_from_edges_and_spreads_it() {
        let mut image = vec![0.0; IMAGE_PIXELS];
        image[14 * 28 + 14] = 1.0;
        let blurred = blur(&image, 2.0);
        let total: f32 = blurred.iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(blurred[14 * 28 + 14] < 0.1);
        assert!(blurred[14 * 28 + 16] > 0.0 && blurred[14 * 28 + 16] < blurred[14 * 28 + 15]);
    }

    #[test]
    fn upsampling_keeps_constants_and_corners_and_interpolates_between() {
        let constant = upsample_bilinear(&[0.5; 4], (2, 2));
        assert!(constant.iter().all(|&v| (v - 0.5).abs() < 1e-6));
        // A left-to-right ramp stays a ramp, with the corners at the source's edge values.
        let ramp = upsample_bilinear(&[0.0, 1.0, 0.0, 1.0], (2, 2));
        assert_eq!(ramp[0], 0.0);
        assert_eq!(ramp[27], 1.0);
        assert!(ramp[13] < ramp[14] && ramp[13] > 0.0 && ramp[14] < 1.0);
    }
}
