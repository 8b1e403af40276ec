//! Data augmentation, the reference for `shaders/augment.wgsl`: every training image is warped
//! by its own random affine map (rotation, scale, shift) and resampled bilinearly.
//!
//! The map is applied backwards: output pixel `o` (centre 13.5, 13.5) reads the source at
//! `zoom * R(angle) * (o - centre - shift) + centre`, bilinearly, with zero outside the image.
//! Its four parameters for the image at position `b` of a step's batch are
//! `random_unit(seed32 ^ AUGMENT_STREAM, step, 4 * b + k)` for k = 0..3 (rotation, scale,
//! shift x, shift y), each mapped to [-1, 1) and scaled by the [`Augment`] maxima.
//!
//! The GPU repeats the arithmetic operation for operation. Sine and cosine come from a
//! polynomial ([`sin_cos`]) rather than the platform's, whose WGSL accuracy is only 2^-11
//! absolute; and there is no division, which WGSL rounds to 2.5 ULP only.

use crate::config::Augment;
use crate::data::IMAGE_PIXELS;
use crate::rng::random_unit;

/// Image width and height.
pub const SIDE: usize = 28;
/// The centre of rotation and scaling, between the middle pixels.
const CENTRE: f32 = 13.5;
/// Mixed into the run's seed32 so that augmentation draws numbers apart from other streams
/// (dropout uses its own constant).
pub const AUGMENT_STREAM: u32 = 0x6175_6731;

/// One image's affine map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    /// Rotation in radians.
    pub angle: f32,
    /// Scale of the source coordinates: above 1 the digit shrinks, below 1 it grows.
    pub zoom: f32,
    /// Shift of the content, in pixels.
    pub shift_x: f32,
    pub shift_y: f32,
}

impl Transform {
    /// The map of the image at `position` in the batch of training step `step` (from 1) of a
    /// run keyed by `seed` (its [`crate::rng::seed32`]).
    pub fn sample(augment: &Augment, (seed, step): (u32, u32), position: u32) -> Transform {
        let signed =
            |k: u32| 2.0 * random_unit(seed ^ AUGMENT_STREAM, step, 4 * position + k) - 1.0;
        Transform {
            angle: signed(0) * augment.max_rotation.to_radians(),
            zoom: 1.0 + signed(1) * augment.max_scale,
            shift_x: signed(2) * augment.max_shift,
            shift_y: signed(3) * augment.max_shift,
        }
    }

    /// Writes the warped `src` (one 28x28 image) to `dst`.
    pub fn warp(&self, src: &[f32], dst: &mut [f32]) {
        let (sin, cos) = sin_cos(self.angle);
        let (a, b) = (cos * self.zoom, sin * self.zoom);
        for (p, out) in dst[..IMAGE_PIXELS].iter_mut().enumerate() {
            let (ox, oy) = ((p % SIDE) as f32, (p / SIDE) as f32);
            let dx = ox - CENTRE - self.shift_x;
            let dy = oy - CENTRE - self.shift_y;
            let sx = a * dx - b * dy + CENTRE;
            let sy = b * dx + a * dy + CENTRE;
            *out = bilinear(src, sx, sy);
        }
    }
}

/// The source image at (x, y), interpolated between its four nearest pixels, each zero outside.
fn bilinear(src: &[f32], x: f32, y: f32) -> f32 {
    // Far outside, every neighbour is zero; clamping keeps the integer conversion in range.
    let (x, y) = (x.clamp(-2.0, 30.0), y.clamp(-2.0, 30.0));
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (ix, iy) = (x0 as i32, y0 as i32);
    let pixel = |x: i32, y: i32| {
        let inside = (0..SIDE as i32).contains(&x) && (0..SIDE as i32).contains(&y);
        if inside {
            src[y as usize * SIDE + x as usize]
        } else {
            0.0
        }
    };
    let top = (1.0 - fx) * pixel(ix, iy) + fx * pixel(ix + 1, iy);
    let bottom = (1.0 - fx) * pixel(ix, iy + 1) + fx * pixel(ix + 1, iy + 1);
    (1.0 - fy) * top + fy * bottom
}

/// (sin t, cos t) for |t| <= pi, within a few f32 ULP of 1 (6e-7): Taylor polynomials of the half angle (degree 11
/// and 12 reach 6e-8 at pi/2), then the double-angle formulas. `augment.wgsl` has the twin.
pub fn sin_cos(t: f32) -> (f32, f32) {
    let h = 0.5 * t;
    let h2 = h * h;
    let sin_h = h
        * (1.0
            - h2 * (1.6666667e-1
                - h2 * (8.333334e-3
                    - h2 * (1.984127e-4 - h2 * (2.7557319e-6 - h2 * 2.5052108e-8)))));
    let cos_h = 1.0
        - h2 * (5e-1
            - h2 * (4.1666668e-2
                - h2 * (1.3888889e-3
                    - h2 * (2.4801588e-5 - h2 * (2.755732e-7 - h2 * 2.0876756e-9)))));
    (2.0 * sin_h * cos_h, 1.0 - 2.0 * sin_h * sin_h)
}

/// Warps each image of the batch `src` (`n x 784`) into `dst` with the maps of step `key`
/// (seed32, step).
pub fn augment_batch(augment: &Augment, key: (u32, u32), src: &[f32], dst: &mut [f32]) {
    for (b, (s, d)) in src
        .chunks_exact(IMAGE_PIXELS)
        .zip(dst.chunks_exact_mut(IMAGE_PIXELS))
        .enumerate()
    {
        Transform::sample(augment, key, b as u32).warp(s, d);
    }
}

/// [`augment_batch`] in place, through a copy of one image at a time.
pub fn augment_in_place(augment: &Augment, key: (u32, u32), x: &mut [f32]) {
    let mut src = [0.0f32; IMAGE_PIXELS];
    for (b, image) in x.chunks_exact_mut(IMAGE_PIXELS).enumerate() {
        src.copy_from_slice(image);
        Transform::sample(augment, key, b as u32).warp(&src, image);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::random_vec;
    use crate::rng::seed32;

    const NONE: Augment = Augment {
        max_shift: 0.0,
        max_rotation: 0.0,
        max_scale: 0.0,
    };

    #[test]
    fn zero_ranges_leave_images_unchanged() {
        let src = random_vec(3 * IMAGE_PIXELS, 1, 0.0, 1.0);
        let mut dst = vec![f32::NAN; src.len()];
        augment_batch(&NONE, (seed32(5), 9), &src, &mut dst);
        assert_eq!(dst, src);
        let mut x = src.clone();
        augment_in_place(&NONE, (seed32(5), 9), &mut x);
        assert_eq!(x, src);
    }

    #[test]
    fn an_integer_shift_moves_pixels_exactly() {
        let src = random_vec(IMAGE_PIXELS, 2, 0.0, 1.0);
        let mut dst = vec![f32::NAN; IMAGE_PIXELS];
        let shift = Transform {
            angle: 0.0,
            zoom: 1.0,
            shift_x: 2.0,
            shift_y: -3.0,
        };
        shift.warp(&src, &mut dst);
        for y in 0..SIDE {
            for x in 0..SIDE {
                let expected = if x >= 2 && y + 3 < SIDE {
                    src[(y + 3) * SIDE + x - 2]
                } else {
                    0.0
                };
                assert_eq!(dst[y * SIDE + x], expected, "({x}, {y})");
            }
        }
    }

    #[test]
    fn a_quarter_turn_moves_rows_to_columns() {
        let src = random_vec(IMAGE_PIXELS, 3, 0.0, 1.0);
        let mut dst = vec![f32::NAN; IMAGE_PIXELS];
        let turn = Transform {
            angle: std::f32::consts::FRAC_PI_2,
            zoom: 1.0,
            shift_x: 0.0,
            shift_y: 0.0,
        };
        turn.warp(&src, &mut dst);
        for y in 0..SIDE {
            for x in 0..SIDE {
                let expected = src[x * SIDE + (SIDE - 1 - y)];
                assert!((dst[y * SIDE + x] - expected).abs() < 1e-5, "({x}, {y})");
            }
        }
    }

    #[test]
    fn the_polynomial_sine_and_cosine_are_accurate_up_to_half_a_turn() {
        // The worst absolute error of either over [-limit, limit].
        let worst = |limit: f32| {
            (-1000..=1000)
                .map(|i| {
                    let t = i as f32 * (limit / 1000.0);
                    let (s, c) = sin_cos(t);
                    let t = f64::from(t);
                    let sin_error = (f64::from(s) - t.sin()).abs();
                    sin_error.max((f64::from(c) - t.cos()).abs())
                })
                .fold(0.0f64, f64::max)
        };
        let (half_turn, small) = (worst(std::f32::consts::PI), worst(30f32.to_radians()));
        eprintln!("worst sin/cos error: {half_turn:e} up to 180 degrees, {small:e} up to 30");
        // f32 rounding dominates: a few ULP of 1.
        assert!(half_turn < 1e-6 && small < 2e-7, "{half_turn:e} {small:e}");
        assert_eq!(sin_cos(0.0), (0.0, 1.0));
    }

    #[test]
    fn the_same_key_gives_the_same_images_and_another_key_others() {
        let src = random_vec(4 * IMAGE_PIXELS, 4, 0.0, 1.0);
        let augment = Augment::mnist();
        let warp = |key| {
            let mut dst = vec![0.0; src.len()];
            augment_batch(&augment, key, &src, &mut dst);
            dst
        };
        let first = warp((seed32(7), 3));
        assert_eq!(first, warp((seed32(7), 3)));
        assert_ne!(first, warp((seed32(7), 4)), "another step");
        assert_ne!(first, warp((seed32(8), 3)), "another seed");
        assert_ne!(first, src, "augmentation changes images");
        let image = |v: &[f32], b: usize| v[b * IMAGE_PIXELS..(b + 1) * IMAGE_PIXELS].to_vec();
        assert_ne!(image(&first, 0), image(&first, 1), "each image its own map");
    }

    #[test]
    fn sampled_parameters_stay_in_their_ranges() {
        let augment = Augment::mnist();
        for b in 0..1000 {
            let t = Transform::sample(&augment, (seed32(1), 1), b);
            assert!(t.angle.abs() <= 10f32.to_radians(), "{t:?}");
            assert!((0.9..=1.1).contains(&t.zoom), "{t:?}");
            assert!(t.shift_x.abs() <= 2.0 && t.shift_y.abs() <= 2.0, "{t:?}");
        }
    }
}
