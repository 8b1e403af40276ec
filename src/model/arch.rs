//! Architecture descriptions: a list of layers, parsed from and printed as a spec string such as
//! `conv32k3-relu-pool2-conv64k3-relu-pool2-flatten-dense10`.
//!
//! Grammar (tokens joined by `-`):
//! - `conv<C>k<K>`: 2-D convolution, `C` output channels, `K`x`K` kernel, stride 1, valid padding
//! - `relu`: rectified linear unit
//! - `pool2`: 2x2 max pooling with stride 2 (odd sizes floor, like Keras)
//! - `flatten`: channels x height x width to one vector, in that (PyTorch) order
//! - `dense<N>`: fully connected layer with `N` outputs

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Conv2d { out_channels: usize, kernel: usize },
    Relu,
    MaxPool2d,
    Flatten,
    Dense { units: usize },
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Conv2d {
                out_channels,
                kernel,
            } => write!(f, "conv{out_channels}k{kernel}"),
            Layer::Relu => write!(f, "relu"),
            Layer::MaxPool2d => write!(f, "pool2"),
            Layer::Flatten => write!(f, "flatten"),
            Layer::Dense { units } => write!(f, "dense{units}"),
        }
    }
}

/// A model architecture: the layers in order, independent of any device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arch {
    pub layers: Vec<Layer>,
}

/// The names `--arch` accepts besides spec strings.
pub const PRESETS: &[(&str, &str)] = &[(
    "seed",
    "conv32k3-relu-pool2-conv64k3-relu-pool2-flatten-dense10",
)];

/// Whether `--augment auto` augments the training images of `--arch preset_or_spec`: only the
/// `strong` preset, trained long enough for augmentation to pay off, does by default.
pub fn augments_by_default(preset_or_spec: &str) -> bool {
    preset_or_spec.trim() == "strong"
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tokens: Vec<String> = self.layers.iter().map(Layer::to_string).collect();
        write!(f, "{}", tokens.join("-"))
    }
}

impl Arch {
    /// The tutorial CNN.
    pub fn seed() -> Arch {
        Arch::parse("seed").expect("the seed preset parses")
    }

    /// Parses a preset name or a spec string. Errors name the offending token.
    pub fn parse(spec: &str) -> Result<Arch, String> {
        let spec = spec.trim();
        let expanded = PRESETS
            .iter()
            .find(|(name, _)| *name == spec)
            .map_or(spec, |(_, s)| s);
        if expanded.is_empty() {
            return Err("empty architecture spec".into());
        }
        let layers = expanded
            .split('-')
            .enumerate()
            .map(|(i, token)| {
                parse_layer(token)
                    .map_err(|why| format!("token {} '{token}' in '{expanded}': {why}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arch { layers })
    }
}

fn parse_layer(token: &str) -> Result<Layer, String> {
    match token {
        "relu" => return Ok(Layer::Relu),
        "pool2" => return Ok(Layer::MaxPool2d),
        "flatten" => return Ok(Layer::Flatten),
        _ => {}
    }
    if let Some(rest) = token.strip_prefix("conv") {
        let (channels, kernel) = rest
            .split_once('k')
            .ok_or("a convolution is written conv<channels>k<kernel>, e.g. conv32k3")?;
        return Ok(Layer::Conv2d {
            out_channels: positive(channels, "channel count")?,
            kernel: positive(kernel, "kernel size")?,
        });
    }
    if let Some(units) = token.strip_prefix("dense") {
        return Ok(Layer::Dense {
            units: positive(units, "width")?,
        });
    }
    Err("unknown layer; expected convCkK, relu, pool2, flatten or denseN".into())
}

fn positive(text: &str, what: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{what} '{text}' is not a positive integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_preset_round_trips_through_its_spec() {
        let arch = Arch::seed();
        assert_eq!(arch.layers.len(), 8);
        assert_eq!(Arch::parse(&arch.to_string()).unwrap(), arch);
        assert_eq!(
            arch.layers[0],
            Layer::Conv2d {
                out_channels: 32,
                kernel: 3
            }
        );
    }

    #[test]
    fn only_the_strong_preset_augments_by_default() {
        assert!(augments_by_default("strong") && augments_by_default(" strong "));
        assert!(!augments_by_default("seed"));
        assert!(!augments_by_default("conv32k3-relu-pool2-flatten-dense10"));
    }

    #[test]
    fn bad_tokens_are_named() {
        let err = Arch::parse("conv32k3-relu-poolx").unwrap_err();
        assert!(err.contains("token 3 'poolx'"), "{err}");
        let err = Arch::parse("conv0k3").unwrap_err();
        assert!(err.contains("channel count '0'"), "{err}");
        assert!(Arch::parse("dense").unwrap_err().contains("width ''"));
        assert!(Arch::parse("").is_err());
    }
}
