//! Architecture descriptions: a list of layers, parsed from and printed as a spec string such as
//! `conv32k3-relu-pool2-conv64k3-relu-pool2-flatten-dense10`.
//!
//! Grammar (tokens joined by `-`):
//! - `conv<C>k<K>[s<S>][same|valid]`: 2-D convolution, `C` output channels, `K`x`K` kernel,
//!   stride `S` (default 1), `valid` padding (the default: no padding) or `same` (pads
//!   `(K-1)/2` zeros on every side, so stride 1 keeps the size; needs an odd `K`)
//! - `relu`, `sigmoid`, `tanh`: activations
//! - `pool2` (or `maxpool2`), `avgpool2`: 2x2 max or average pooling with stride 2 (odd sizes
//!   floor, like Keras)
//! - `dropout<R>`: zeroes each activation with probability `R` in [0, 1) while training and
//!   scales the others by `1/(1-R)`; nothing at inference
//! - `bn` (or `batchnorm`): batch normalisation per channel (per feature after flatten), with
//!   batch statistics while training and running statistics at inference, like PyTorch
//! - `flatten`: channels x height x width to one vector, in that (PyTorch) order
//! - `dense<N>`: fully connected layer with `N` outputs

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    Valid,
    Same,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Sigmoid,
    Tanh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Max,
    Avg,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Layer {
    Conv2d {
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: Padding,
    },
    Activation(Activation),
    Pool2d(Pool),
    Dropout {
        rate: f32,
    },
    BatchNorm,
    Flatten,
    Dense {
        units: usize,
    },
}

impl Layer {
    /// A stride-1, unpadded convolution (the seed model's kind).
    pub const fn conv(out_channels: usize, kernel: usize) -> Layer {
        Layer::Conv2d {
            out_channels,
            kernel,
            stride: 1,
            padding: Padding::Valid,
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        })
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
            } => {
                write!(f, "conv{out_channels}k{kernel}")?;
                if *stride != 1 {
                    write!(f, "s{stride}")?;
                }
                if *padding == Padding::Same {
                    write!(f, "same")?;
                }
                Ok(())
            }
            Layer::Activation(a) => write!(f, "{a}"),
            Layer::Pool2d(Pool::Max) => write!(f, "pool2"),
            Layer::Pool2d(Pool::Avg) => write!(f, "avgpool2"),
            Layer::Dropout { rate } => write!(f, "dropout{rate}"),
            Layer::BatchNorm => write!(f, "bn"),
            Layer::Flatten => write!(f, "flatten"),
            Layer::Dense { units } => write!(f, "dense{units}"),
        }
    }
}

/// A model architecture: the layers in order, independent of any device.
#[derive(Clone, Debug, PartialEq)]
pub struct Arch {
    pub layers: Vec<Layer>,
}

/// The names `--arch` accepts besides spec strings: `seed`, the tutorial CNN, and `strong`,
/// our best small model for MNIST (pairs of 3x3 conv-bn-relu blocks, dropout after each pool
/// and before the classifier; trained with augmentation, its recipe is `config::Recipe::STRONG`, its figures in docs/performance.md).
pub const PRESETS: &[(&str, &str)] = &[
    (
        "seed",
        "conv32k3-relu-pool2-conv64k3-relu-pool2-flatten-dense10",
    ),
    (
        "strong",
        "conv32k3-bn-relu-conv32k3-bn-relu-pool2-dropout0.25-\
         conv64k3-bn-relu-conv64k3-bn-relu-pool2-dropout0.25-\
         flatten-dense128-bn-relu-dropout0.5-dense10",
    ),
];

/// A spec file's layers joined into one spec string: comments dropped, lines joined by '-'.
pub fn spec_from_file(text: &str) -> String {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("-")
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
        // One word that is no layer is most likely a mistyped preset.
        if !expanded.contains('-') && parse_layer(expanded) == Err(UNKNOWN_LAYER.into()) {
            return Err(unknown_word(expanded));
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

    /// Whether any layer behaves differently in training and inference.
    pub fn has_batch_norm(&self) -> bool {
        self.layers.contains(&Layer::BatchNorm)
    }
}

fn parse_layer(token: &str) -> Result<Layer, String> {
    match token {
        "relu" => return Ok(Layer::Activation(Activation::Relu)),
        "sigmoid" => return Ok(Layer::Activation(Activation::Sigmoid)),
        "tanh" => return Ok(Layer::Activation(Activation::Tanh)),
        "pool2" | "maxpool2" => return Ok(Layer::Pool2d(Pool::Max)),
        "avgpool2" => return Ok(Layer::Pool2d(Pool::Avg)),
        "bn" | "batchnorm" => return Ok(Layer::BatchNorm),
        "flatten" => return Ok(Layer::Flatten),
        _ => {}
    }
    if let Some(rest) = token.strip_prefix("conv") {
        return parse_conv(rest);
    }
    if let Some(units) = token.strip_prefix("dense") {
        return Ok(Layer::Dense {
            units: positive(units, "width")?,
        });
    }
    if let Some(rate) = token.strip_prefix("dropout") {
        return match rate.parse::<f32>() {
            Ok(r) if (0.0..1.0).contains(&r) => Ok(Layer::Dropout { rate: r }),
            _ => Err(format!(
                "dropout rate '{rate}' is not a number in [0, 1), e.g. dropout0.25"
            )),
        };
    }
    Err(UNKNOWN_LAYER.into())
}

const UNKNOWN_LAYER: &str = "unknown layer; expected convCkK[sS][same|valid], relu, sigmoid, \
                             tanh, pool2, avgpool2, dropoutR, bn, flatten or denseN";

/// The error for a spec of one word that is neither a preset nor a layer, with the presets
/// and the closest of them when it is a likely typo.
fn unknown_word(word: &str) -> String {
    let names: Vec<&str> = PRESETS.iter().map(|(name, _)| *name).collect();
    let mut message = format!(
        "unknown preset or layer '{word}'; presets are {}",
        names.join(", ")
    );
    let lower = word.to_lowercase();
    let closest = names
        .iter()
        .map(|name| (edit_distance(&lower, name), *name))
        .min();
    if let Some((distance, name)) = closest {
        if distance <= (name.len() / 2).min(2) {
            message += &format!("; did you mean '{name}'?");
        }
    }
    message
}

/// Levenshtein distance: the fewest insertions, deletions and substitutions of characters
/// that turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// `<C>k<K>[s<S>][same|valid]`, after `conv`.
fn parse_conv(rest: &str) -> Result<Layer, String> {
    let (channels, rest) = rest
        .split_once('k')
        .ok_or("a convolution is written conv<channels>k<kernel>, e.g. conv32k3")?;
    let (rest, padding) = if let Some(r) = rest.strip_suffix("same") {
        (r, Padding::Same)
    } else {
        (rest.strip_suffix("valid").unwrap_or(rest), Padding::Valid)
    };
    let (kernel, stride) = match rest.split_once('s') {
        Some((k, s)) => (k, positive(s, "stride")?),
        None => (rest, 1),
    };
    let kernel = positive(kernel, "kernel size")?;
    if padding == Padding::Same && kernel % 2 == 0 {
        return Err(format!("same padding needs an odd kernel, got {kernel}"));
    }
    Ok(Layer::Conv2d {
        out_channels: positive(channels, "channel count")?,
        kernel,
        stride,
        padding,
    })
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
        assert_eq!(arch.layers[0], Layer::conv(32, 3));
    }

    #[test]
    fn every_layer_kind_round_trips() {
        let spec = "conv8k3s2same-bn-tanh-conv4k5valid-sigmoid-avgpool2-maxpool2-dropout0.25-\
                    flatten-dense16-batchnorm-relu-dense10";
        let arch = Arch::parse(spec).unwrap();
        assert_eq!(
            arch.layers[0],
            Layer::Conv2d {
                out_channels: 8,
                kernel: 3,
                stride: 2,
                padding: Padding::Same
            }
        );
        assert_eq!(arch.layers[3], Layer::conv(4, 5));
        assert_eq!(arch.layers[7], Layer::Dropout { rate: 0.25 });
        let printed = arch.to_string();
        assert_eq!(
            printed,
            "conv8k3s2same-bn-tanh-conv4k5-sigmoid-avgpool2-pool2-dropout0.25-flatten-dense16-\
             bn-relu-dense10"
        );
        assert_eq!(Arch::parse(&printed).unwrap(), arch);
        assert!(arch.has_batch_norm() && !Arch::seed().has_batch_norm());
    }

    #[test]
    fn a_single_unknown_word_lists_the_presets_and_suggests_a_close_one() {
        let err = Arch::parse("seeed").unwrap_err();
        assert_eq!(
            err,
            "unknown preset or layer 'seeed'; presets are seed, strong; did you mean 'seed'?"
        );
        assert!(Arch::parse("Strong")
            .unwrap_err()
            .ends_with("did you mean 'strong'?"));
        let err = Arch::parse("resnet").unwrap_err();
        assert_eq!(
            err,
            "unknown preset or layer 'resnet'; presets are seed, strong"
        );
        // A layer's own mistakes keep their specific message.
        assert!(Arch::parse("conv0k3")
            .unwrap_err()
            .contains("channel count"));
        assert!(Arch::parse("seeed-dense10")
            .unwrap_err()
            .contains("token 1 'seeed'"));
        assert_eq!(edit_distance("strnog", "strong"), 2);
        assert_eq!(edit_distance("", "seed"), 4);
    }

    #[test]
    fn bad_tokens_are_named() {
        let err = Arch::parse("conv32k3-relu-poolx").unwrap_err();
        assert!(err.contains("token 3 'poolx'"), "{err}");
        let err = Arch::parse("conv0k3").unwrap_err();
        assert!(err.contains("channel count '0'"), "{err}");
        assert!(Arch::parse("dense").unwrap_err().contains("width ''"));
        assert!(Arch::parse("").is_err());
        let err = Arch::parse("conv8k4same").unwrap_err();
        assert!(err.contains("odd kernel"), "{err}");
        let err = Arch::parse("conv8k3s0").unwrap_err();
        assert!(err.contains("stride '0'"), "{err}");
        let err = Arch::parse("conv8k3-dropout1.5").unwrap_err();
        assert!(
            err.contains("token 2 'dropout1.5'") && err.contains("[0, 1)"),
            "{err}"
        );
    }
}
