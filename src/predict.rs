//! Ordinary images (PNG, JPEG, GIF, BMP, WebP) turned into MNIST inputs, the way the MNIST
//! digits themselves were prepared: grayscale, light ink on a black background, cropped to the
//! ink, scaled to fit a 20x20 box keeping the aspect ratio, and placed in the 28x28 field so
//! that the centre of mass of the ink is at its centre. One step more than MNIST needed: thin
//! strokes are thickened to MNIST's width first, as a fine pen on a large canvas would
//! otherwise shrink to a faint trace. Device-agnostic: the result is the 784 bytes a
//! [`crate::backend::Backend`] classifies. Also the softmax and top classes of logits.

use std::io::Cursor;

use anyhow::Result;
use image::imageops::{self, FilterType};
use image::math::Rect;
use image::{
    DynamicImage, ImageBuffer, ImageDecoder, ImageError, ImageReader, Limits, Luma, Rgba32FImage,
};
use serde::Serialize;

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};
use crate::error::bad_input;

/// One channel in [0, 1] per pixel.
pub type Gray = ImageBuffer<Luma<f32>, Vec<f32>>;

/// MNIST digits fill a 20x20 box inside the 28x28 field.
pub const DIGIT_BOX: u32 = 20;
/// A pixel with at least this much ink (after [`stretch_contrast`]) belongs to the digit's
/// bounding box; fainter ones are antialiasing, paper grain or compression noise.
pub const INK_THRESHOLD: f32 = 0.25;
/// Ink within this fraction of the contrast from the background is noise and becomes 0, as
/// MNIST's background is exactly 0.
const NOISE_FLOOR: f32 = 0.1;
/// Median stroke width of the MNIST digits as [`stroke_width`] measures it (1.8 pixels over
/// the first 2000 test digits); thinner strokes are thickened to it.
pub const MNIST_STROKE_WIDTH: f32 = 1.8;
/// Less contrast than this between background and the strongest ink is a blank image.
const MIN_CONTRAST: f32 = 0.1;
/// Wider or taller images are refused before decoding, so a forged header cannot exhaust
/// memory.
const MAX_IMAGE_SIDE: u32 = 16_384;
/// Larger pictures are scaled down to this many pixels on their longer side before anything
/// else: a digit needs far fewer, and the stroke dilation grows with the picture (a 2 KB JPEG
/// claiming 100 x 15,766 pixels took 3.5 s and 318 MB at full size; the fuzzer found it).
const WORK_SIDE: u32 = 1024;

/// The 784 bytes (0 = background, 255 = ink) of the digit in an encoded image.
pub fn mnist_input(encoded: &[u8]) -> Result<Vec<u8>> {
    let mut image = decode(encoded)?;
    if image.width().max(image.height()) > WORK_SIDE {
        image = image.thumbnail(WORK_SIDE, WORK_SIDE);
    }
    let gray = to_gray(&image);
    let ink = stretch_contrast(&invert_if_light(&gray, border_median(&gray)));
    let bounds = ink_bounds(&ink, INK_THRESHOLD).ok_or_else(|| bad_input("no ink found"))?;
    let digit = thicken_thin_strokes(&crop(&ink, bounds), DIGIT_BOX);
    let digit = fit_into_box(&digit, DIGIT_BOX);
    Ok(to_bytes(&place_by_mass(&digit, IMAGE_SIDE as u32)))
}

/// Decodes any supported format, recognised by content rather than file name, and turns it
/// upright when its EXIF data says it was stored rotated (as phone cameras do).
pub fn decode(encoded: &[u8]) -> Result<DynamicImage> {
    let fail = |e: ImageError| match e {
        ImageError::Limits(_) => bad_input(format!(
            "too large ({e}; at most {MAX_IMAGE_SIDE} pixels a side)"
        )),
        _ => bad_input(format!("not an image ({e})")),
    };
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    let mut reader = ImageReader::new(Cursor::new(encoded))
        .with_guessed_format()
        .map_err(|e| fail(e.into()))?;
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder().map_err(fail)?;
    // The allocation check that `ImageReader::decode` makes, which `from_decoder` does not.
    limits.reserve(decoder.total_bytes()).map_err(fail)?;
    let orientation = decoder.orientation().map_err(fail)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(fail)?;
    if image.width() == 0 || image.height() == 0 {
        return Err(bad_input("empty image (0 pixels)"));
    }
    image.apply_orientation(orientation);
    Ok(image)
}

/// Luminance (Rec. 709, as `image` computes it), with transparent pixels showing the backdrop
/// from [`backdrop_for`].
pub fn to_gray(image: &DynamicImage) -> Gray {
    let rgba = image.to_rgba32f();
    let backdrop = backdrop_for(&rgba);
    Gray::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        Luma([luminance(r, g, b) * a + backdrop * (1.0 - a)])
    })
}

fn luminance(r: f32, g: f32, b: f32) -> f32 {
    0.2126 * r + 0.7152 * g + 0.0722 * b
}

/// What shows through transparent pixels: white behind dark drawings, black behind light ones.
/// The colour that transparent pixels hide is arbitrary (often black, even behind black ink),
/// so the visible pixels decide.
fn backdrop_for(rgba: &Rgba32FImage) -> f32 {
    let (sum, weight) = rgba.pixels().fold((0.0, 0.0), |(sum, weight), p| {
        let [r, g, b, a] = p.0;
        (sum + luminance(r, g, b) * a, weight + a)
    });
    if weight > 0.0 && sum / weight > 0.5 {
        0.0
    } else {
        1.0
    }
}

/// The median of the outermost pixels: the background, unless the digit covers most of the
/// border. An empty image counts as black.
pub fn border_median(gray: &Gray) -> f32 {
    let (w, h) = gray.dimensions();
    let mut border: Vec<f32> = gray
        .enumerate_pixels()
        .filter(|(x, y, _)| *x == 0 || *y == 0 || *x == w - 1 || *y == h - 1)
        .map(|(_, _, p)| p.0[0])
        .collect();
    border.sort_by(f32::total_cmp);
    border.get(border.len() / 2).copied().unwrap_or(0.0)
}

/// Ink as brightness, as in MNIST: the image inverted when its background is light.
pub fn invert_if_light(gray: &Gray, background: f32) -> Gray {
    if background <= 0.5 {
        return gray.clone();
    }
    let mut inverted = gray.clone();
    inverted.pixels_mut().for_each(|p| p.0[0] = 1.0 - p.0[0]);
    inverted
}

/// Maps the background (the border median) and the noise just above it to 0 and the strongest
/// ink to 1, so faint pencil and low-contrast colours reach MNIST's full-strength strokes. An
/// image without enough contrast comes back all 0.
pub fn stretch_contrast(ink: &Gray) -> Gray {
    let background = border_median(ink);
    let peak = ink.pixels().map(|p| p.0[0]).fold(background, f32::max);
    let contrast = peak - background;
    let mut stretched = Gray::new(ink.width(), ink.height());
    if contrast < MIN_CONTRAST {
        return stretched;
    }
    let low = background + NOISE_FLOOR * contrast;
    for (out, p) in stretched.pixels_mut().zip(ink.pixels()) {
        out.0[0] = ((p.0[0] - low) / (peak - low)).clamp(0.0, 1.0);
    }
    stretched
}

/// The smallest rectangle holding every pixel with at least `threshold` ink; `None` if there is
/// none.
pub fn ink_bounds(ink: &Gray, threshold: f32) -> Option<Rect> {
    let inked = || {
        ink.enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] >= threshold)
    };
    let x0 = inked().map(|(x, _, _)| x).min()?;
    let x1 = inked().map(|(x, _, _)| x).max()?;
    let y0 = inked().map(|(_, y, _)| y).min()?;
    let y1 = inked().map(|(_, y, _)| y).max()?;
    Some(Rect {
        x: x0,
        y: y0,
        width: x1 - x0 + 1,
        height: y1 - y0 + 1,
    })
}

/// The part of `image` inside `r`.
pub fn crop(image: &Gray, r: Rect) -> Gray {
    imageops::crop_imm(image, r.x, r.y, r.width, r.height).to_image()
}

/// Mean stroke width in pixels: twice the ink over the perimeter of the pixels with at least
/// [`INK_THRESHOLD`] (counted in pixel sides), as a stroke of width w and length L holds w*L of
/// ink inside a perimeter of about 2L. The ink is summed in full, so antialiased edges count in
/// part. Diagonal strokes read a little thin (their perimeter is a staircase).
pub fn stroke_width(ink: &Gray) -> f32 {
    let (w, h) = (ink.width() as i64, ink.height() as i64);
    let inked = |x: i64, y: i64| {
        (0..w).contains(&x)
            && (0..h).contains(&y)
            && ink.get_pixel(x as u32, y as u32).0[0] >= INK_THRESHOLD
    };
    let sides = [(1, 0), (-1, 0), (0, 1), (0, -1)];
    let mut perimeter = 0u64;
    for (x, y) in (0..h).flat_map(|y| (0..w).map(move |x| (x, y))) {
        if inked(x, y) {
            perimeter += sides
                .iter()
                .filter(|(dx, dy)| !inked(x + dx, y + dy))
                .count() as u64;
        }
    }
    let mass: f32 = ink.pixels().map(|p| p.0[0]).sum();
    if perimeter == 0 {
        return 0.0;
    }
    2.0 * mass / perimeter as f32
}

/// Widens strokes that would come out thinner than MNIST's once the cropped `digit` is scaled
/// to fit a `side`-pixel box: a 2-pixel pencil on a large canvas would otherwise shrink to a
/// faint trace. The digit is padded so that nothing is cut.
pub fn thicken_thin_strokes(digit: &Gray, side: u32) -> Gray {
    let extent = digit.width().max(digit.height()) as f32;
    let (target, side) = (MNIST_STROKE_WIDTH, side as f32);
    // A max filter of radius r adds 2r to both the stroke and the digit:
    // solve (width + 2r) * side / (extent + 2r) = target for r.
    let radius = (target * extent - side * stroke_width(digit)) / (2.0 * (side - target));
    if radius < 0.5 {
        return digit.clone();
    }
    let radius = radius.round() as u32;
    let mut padded = Gray::new(digit.width() + 2 * radius, digit.height() + 2 * radius);
    imageops::replace(&mut padded, digit, radius.into(), radius.into());
    dilate(&padded, radius as usize)
}

/// Grey-level dilation by a square of side `2 * radius + 1`: each pixel takes the largest
/// value around it. Separable, rows then columns.
pub fn dilate(ink: &Gray, radius: usize) -> Gray {
    let (w, h) = (ink.width() as usize, ink.height() as usize);
    let mut rows = Vec::with_capacity(w * h);
    for row in ink.as_raw().chunks_exact(w.max(1)) {
        rows.extend(running_max(row, radius));
    }
    let mut out = Gray::new(w as u32, h as u32);
    for x in 0..w {
        let column: Vec<f32> = (0..h).map(|y| rows[y * w + x]).collect();
        for (y, v) in running_max(&column, radius).into_iter().enumerate() {
            out.put_pixel(x as u32, y as u32, Luma([v]));
        }
    }
    out
}

/// The maximum over the window of `2 * radius + 1` values around each value (0 past the
/// ends), by van Herk and Gil-Werman's method: prefix and suffix maxima within blocks of the
/// window's length, so the cost does not grow with the radius.
pub fn running_max(values: &[f32], radius: usize) -> Vec<f32> {
    let window = 2 * radius + 1;
    let len = (values.len() + 2 * radius).div_ceil(window) * window;
    let mut prefix = vec![0.0f32; len];
    prefix[radius..radius + values.len()].copy_from_slice(values);
    let mut suffix = prefix.clone();
    for i in 1..len {
        if i % window != 0 {
            prefix[i] = prefix[i].max(prefix[i - 1]);
        }
    }
    for i in (0..len - 1).rev() {
        if (i + 1) % window != 0 {
            suffix[i] = suffix[i].max(suffix[i + 1]);
        }
    }
    // The window starting at padded index j spans j..=j + 2r: the end of j's block and the
    // start of the next.
    (0..values.len())
        .map(|j| suffix[j].max(prefix[j + 2 * radius]))
        .collect()
}

/// Scales the digit so that its longer side is `side` pixels and the other keeps the aspect
/// ratio (a tall 1 stays thin). The triangle filter widens with the scale, so shrinking
/// averages the source pixels rather than skipping them.
pub fn fit_into_box(digit: &Gray, side: u32) -> Gray {
    let (w, h) = digit.dimensions();
    let scale = side as f32 / w.max(h) as f32;
    let scaled = |n: u32| ((n as f32 * scale).round() as u32).clamp(1, side);
    let mut fitted = imageops::resize(digit, scaled(w), scaled(h), FilterType::Triangle);
    fitted
        .pixels_mut()
        .for_each(|p| p.0[0] = p.0[0].clamp(0.0, 1.0));
    fitted
}

/// Centre of mass of the ink, in pixel units from the top-left corner of the image.
pub fn centre_of_mass(ink: &Gray) -> Option<(f32, f32)> {
    let (mut mass, mut mx, mut my) = (0.0, 0.0, 0.0);
    for (x, y, p) in ink.enumerate_pixels() {
        let v = p.0[0];
        mass += v;
        mx += v * (x as f32 + 0.5);
        my += v * (y as f32 + 0.5);
    }
    (mass > 0.0).then(|| (mx / mass, my / mass))
}

/// A `side` x `side` black field with the digit shifted (by whole pixels) so that its centre
/// of mass is at the field's centre. Ink pushed past the edge is lost, as in MNIST.
pub fn place_by_mass(digit: &Gray, side: u32) -> Gray {
    let (w, h) = digit.dimensions();
    let (cx, cy) = centre_of_mass(digit).unwrap_or((w as f32 / 2.0, h as f32 / 2.0));
    let dx = (side as f32 / 2.0 - cx).round() as i64;
    let dy = (side as f32 / 2.0 - cy).round() as i64;
    let mut field = Gray::new(side, side);
    for (x, y, p) in digit.enumerate_pixels() {
        let (fx, fy) = (x as i64 + dx, y as i64 + dy);
        if (0..side as i64).contains(&fx) && (0..side as i64).contains(&fy) {
            field.put_pixel(fx as u32, fy as u32, *p);
        }
    }
    field
}

/// MNIST bytes: 0 for no ink, 255 for full ink.
pub fn to_bytes(field: &Gray) -> Vec<u8> {
    debug_assert_eq!(field.len(), IMAGE_PIXELS);
    field
        .pixels()
        .map(|p| (p.0[0].clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

/// A class and the model's probability for it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ClassProbability {
    pub class: usize,
    pub probability: f64,
}

/// Softmax in f64 (shifted by the largest logit, so large logits cannot overflow).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// The `k` most probable classes, most probable first (ties: the lower class first).
pub fn top_classes(logits: &[f32], k: usize) -> Vec<ClassProbability> {
    let mut ranked: Vec<ClassProbability> = softmax(logits)
        .into_iter()
        .enumerate()
        .map(|(class, probability)| ClassProbability { class, probability })
        .collect();
    ranked.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    ranked.truncate(k);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w` x `h` image of `background` with `ink` in the given rectangles.
    fn drawn(w: u32, h: u32, background: f32, ink: f32, rects: &[Rect]) -> Gray {
        Gray::from_fn(w, h, |x, y| {
            let inside = rects
                .iter()
                .any(|r| (r.x..r.x + r.width).contains(&x) && (r.y..r.y + r.height).contains(&y));
            Luma([if inside { ink } else { background }])
        })
    }

    fn rect(x: u32, y: u32, width: u32, height: u32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    /// An 8-bit grayscale PNG of `gray`.
    fn png(gray: &Gray) -> Vec<u8> {
        let image = image::GrayImage::from_fn(gray.width(), gray.height(), |x, y| {
            Luma([(gray.get_pixel(x, y).0[0] * 255.0).round() as u8])
        });
        let mut bytes = Vec::new();
        DynamicImage::ImageLuma8(image)
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn a_light_background_is_inverted_and_a_dark_one_kept() {
        let dark_on_white = drawn(10, 10, 1.0, 0.1, &[rect(4, 4, 2, 2)]);
        let background = border_median(&dark_on_white);
        assert_eq!(background, 1.0);
        let ink = invert_if_light(&dark_on_white, background);
        assert_eq!(ink.get_pixel(0, 0).0[0], 0.0);
        assert!((ink.get_pixel(4, 4).0[0] - 0.9).abs() < 1e-6);

        let light_on_black = drawn(10, 10, 0.0, 0.8, &[rect(4, 4, 2, 2)]);
        assert_eq!(invert_if_light(&light_on_black, 0.0), light_on_black);
    }

    #[test]
    fn the_border_median_ignores_a_digit_touching_the_edge() {
        let image = drawn(10, 10, 0.9, 0.0, &[rect(0, 3, 10, 2)]);
        assert_eq!(border_median(&image), 0.9);
    }

    #[test]
    fn contrast_is_stretched_to_full_strength_and_noise_dropped() {
        // Grey pencil on grey paper, with paper grain a little above the background.
        let mut ink = drawn(10, 10, 0.1, 0.5, &[rect(3, 3, 4, 4)]);
        ink.put_pixel(1, 1, Luma([0.12]));
        let stretched = stretch_contrast(&ink);
        assert_eq!(stretched.get_pixel(4, 4).0[0], 1.0);
        assert_eq!(stretched.get_pixel(0, 0).0[0], 0.0);
        assert_eq!(stretched.get_pixel(1, 1).0[0], 0.0);
    }

    #[test]
    fn ink_bounds_hug_the_ink_above_the_threshold() {
        let mut ink = drawn(30, 20, 0.0, 1.0, &[rect(5, 2, 3, 4), rect(9, 10, 2, 1)]);
        ink.put_pixel(25, 15, Luma([INK_THRESHOLD / 2.0]));
        assert_eq!(ink_bounds(&ink, INK_THRESHOLD), Some(rect(5, 2, 6, 9)));
        assert_eq!(ink_bounds(&Gray::new(5, 5), INK_THRESHOLD), None);
    }

    #[test]
    fn stroke_width_measures_bars() {
        for width in [1, 2, 5] {
            let bar = drawn(40, 100, 0.0, 1.0, &[rect(10, 5, width, 90)]);
            // The bar's ends add to its perimeter, so it reads a little thin.
            let measured = stroke_width(&bar);
            assert!(
                (measured / width as f32 - 1.0).abs() < 0.06,
                "{width}: {measured}"
            );
        }
        assert_eq!(stroke_width(&Gray::new(3, 3)), 0.0);
    }

    #[test]
    fn running_max_matches_the_definition() {
        let values: Vec<f32> = (0..23).map(|i| ((i * 7919) % 31) as f32).collect();
        for radius in [0, 1, 2, 5, 30] {
            let naive: Vec<f32> = (0..values.len())
                .map(|i| {
                    let lo = i.saturating_sub(radius);
                    let hi = (i + radius).min(values.len() - 1);
                    values[lo..=hi].iter().copied().fold(0.0, f32::max)
                })
                .collect();
            assert_eq!(running_max(&values, radius), naive, "radius {radius}");
        }
    }

    #[test]
    fn dilation_grows_a_dot_into_a_square() {
        let dot = drawn(9, 7, 0.0, 1.0, &[rect(4, 3, 1, 1)]);
        assert_eq!(dilate(&dot, 2), drawn(9, 7, 0.0, 1.0, &[rect(2, 1, 5, 5)]));
    }

    #[test]
    fn thin_strokes_are_thickened_to_mnist_width_and_thick_ones_kept() {
        // A 2-pixel pencil line 200 pixels tall would be 0.2 pixels wide in the box.
        let thin = drawn(2, 200, 0.0, 1.0, &[rect(0, 0, 2, 200)]);
        let fitted = fit_into_box(&thicken_thin_strokes(&thin, 20), 20);
        let width = stroke_width(&fitted);
        assert!((width - MNIST_STROKE_WIDTH).abs() < 0.3, "{width}");
        let thick = drawn(30, 100, 0.0, 1.0, &[rect(0, 0, 30, 100)]);
        assert_eq!(thicken_thin_strokes(&thick, 20), thick);
    }

    #[test]
    fn fitting_keeps_the_aspect_ratio() {
        let tall = drawn(30, 120, 1.0, 1.0, &[]);
        assert_eq!(fit_into_box(&tall, 20).dimensions(), (5, 20));
        let wide = drawn(9, 6, 1.0, 1.0, &[]);
        assert_eq!(fit_into_box(&wide, 20).dimensions(), (20, 13));
        let sliver = drawn(400, 2, 1.0, 1.0, &[]);
        assert_eq!(fit_into_box(&sliver, 20).dimensions(), (20, 1));
    }

    #[test]
    fn a_digit_in_a_corner_is_centred_by_its_mass() {
        // An L shape: most of its mass is in the long vertical bar, left of the box's centre.
        let digit = drawn(12, 20, 0.0, 1.0, &[rect(0, 0, 3, 20), rect(3, 17, 9, 3)]);
        let field = place_by_mass(&digit, 28);
        let (cx, cy) = centre_of_mass(&field).unwrap();
        assert!(
            (cx - 14.0).abs() <= 0.5 && (cy - 14.0).abs() <= 0.5,
            "{cx}, {cy}"
        );
        // The box is not centred: the bar sits left of the middle column.
        let bounds = ink_bounds(&field, 0.5).unwrap();
        assert!(bounds.x + bounds.width / 2 > 14, "{bounds:?}");
    }

    #[test]
    fn a_light_drawing_on_a_transparent_canvas_keeps_its_contrast() {
        // White ink; the transparent pixels hide white too, so dropping alpha would lose it.
        let image = image::RgbaImage::from_fn(8, 8, |x, _| {
            image::Rgba(if x == 4 { [255; 4] } else { [255, 255, 255, 0] })
        });
        let gray = to_gray(&DynamicImage::ImageRgba8(image));
        assert_eq!(gray.get_pixel(4, 0).0[0], 1.0);
        assert_eq!(gray.get_pixel(0, 0).0[0], 0.0);
    }

    #[test]
    fn a_dark_drawing_on_a_transparent_canvas_is_dark_on_white() {
        // Black ink on transparent black, the way most drawing programs save it.
        let image = image::RgbaImage::from_fn(8, 8, |x, _| {
            image::Rgba(if x == 4 { [0, 0, 0, 255] } else { [0; 4] })
        });
        let gray = to_gray(&DynamicImage::ImageRgba8(image));
        assert_eq!(gray.get_pixel(4, 0).0[0], 0.0);
        assert_eq!(gray.get_pixel(0, 0).0[0], 1.0);
    }

    #[test]
    fn a_drawn_bar_becomes_an_mnist_field() {
        // A dark vertical bar on white, off-centre on a large canvas.
        let canvas = drawn(200, 100, 1.0, 0.0, &[rect(20, 10, 10, 50)]);
        let bytes = mnist_input(&png(&canvas)).unwrap();
        assert_eq!(bytes.len(), IMAGE_PIXELS);
        let field = Gray::from_fn(28, 28, |x, y| {
            Luma([bytes[(y * 28 + x) as usize] as f32 / 255.0])
        });
        // 20 rows tall, 4 columns wide, full strength, around the centre.
        assert_eq!(ink_bounds(&field, 0.5), Some(rect(12, 4, 4, 20)));
        assert_eq!(bytes[14 * 28 + 13], 255);
        assert_eq!(bytes[0], 0);
    }

    #[test]
    fn a_blank_image_has_no_ink() {
        let blank = Gray::from_pixel(30, 30, Luma([0.9]));
        let err = mnist_input(&png(&blank)).unwrap_err();
        assert_eq!(err.to_string(), "no ink found");
    }

    #[test]
    fn text_is_not_an_image() {
        let err = mnist_input(b"hello, I am not a picture").unwrap_err();
        assert!(err.to_string().starts_with("not an image ("), "{err}");
        assert_eq!(crate::error::exit_code(&err), 2);
    }

    #[test]
    fn an_image_over_the_size_limit_is_refused() {
        let wide = png(&Gray::new(MAX_IMAGE_SIDE + 1, 1));
        let err = mnist_input(&wide).unwrap_err();
        assert!(err.to_string().starts_with("too large ("), "{err}");
    }

    #[test]
    fn softmax_is_stable_and_top_classes_are_sorted() {
        let p = softmax(&[1000.0, 1000.0, -1000.0]);
        assert_eq!(p, vec![0.5, 0.5, 0.0]);
        let top = top_classes(&[0.0, 3.0, 1.0, 2.0], 3);
        let classes: Vec<usize> = top.iter().map(|c| c.class).collect();
        assert_eq!(classes, vec![1, 3, 2]);
        let total: f64 = softmax(&[0.0, 3.0, 1.0, 2.0]).iter().sum();
        assert!((total - 1.0).abs() < 1e-12);
    }
}
