//! Shape inference: an [`Arch`] applied to an input shape gives a [`Plan`], the list of layers
//! with their input and output shapes and the parameters each one owns.

use super::arch::{Arch, Layer, Padding};

/// Channels x height x width of one example. A flattened vector of `n` features is `n x 1 x 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Shape {
    pub const fn new(channels: usize, height: usize, width: usize) -> Shape {
        Shape {
            channels,
            height,
            width,
        }
    }

    /// Elements per example.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_flat(&self) -> bool {
        self.height == 1 && self.width == 1
    }
}

/// One MNIST image.
pub const MNIST_INPUT: Shape = Shape::new(1, 28, 28);
/// Labels are bytes, so a model classifies into at most this many classes.
pub const MAX_CLASSES: usize = 256;

/// How a parameter tensor starts: Keras defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    GlorotUniform { fan_in: usize, fan_out: usize },
    Zeros,
    Ones,
}

/// A named parameter tensor, with PyTorch's name and layout.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    /// False for statistics that training updates without gradients (batch norm's running
    /// mean and variance): the optimiser skips them. They come after every trainable tensor.
    pub trainable: bool,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A layer with its shapes and, for conv, dense and batch-norm layers, the index of its weight
/// in [`Plan::params`] (the bias follows it); batch norm also has the index of its running mean
/// (the running variance follows it).
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub layer: Layer,
    pub input: Shape,
    pub output: Shape,
    pub weight_index: Option<usize>,
    pub stats_index: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub arch: Arch,
    pub input: Shape,
    pub steps: Vec<Step>,
    pub params: Vec<ParamSpec>,
}

impl Plan {
    /// Infers every shape; the last layer must produce flat logits, one per class (2 to
    /// [`MAX_CLASSES`]): an arch ending in `denseK` classifies K classes.
    pub fn new(arch: &Arch, input: Shape) -> Result<Plan, String> {
        let denses = arch
            .layers
            .iter()
            .filter(|l| matches!(l, Layer::Dense { .. }))
            .count();
        let (mut conv_no, mut dense_no, mut bn_no) = (0, 0, 0);
        let mut shape = input;
        let mut steps = Vec::new();
        let mut params = Vec::new();
        // Running statistics, appended after every trainable tensor: (step, names).
        let mut statistics = Vec::new();
        for (i, &layer) in arch.layers.iter().enumerate() {
            let at = |why: String| format!("layer {} '{layer}' of '{arch}': {why}", i + 1);
            let output = output_shape(layer, shape).map_err(at)?;
            let weight_index = match layer {
                Layer::Conv2d {
                    out_channels,
                    kernel,
                    ..
                } => {
                    conv_no += 1;
                    let name = format!("conv{conv_no}");
                    let fan = |c: usize| c * kernel * kernel;
                    let shape4 = vec![out_channels, shape.channels, kernel, kernel];
                    let glorot = Init::GlorotUniform {
                        fan_in: fan(shape.channels),
                        fan_out: fan(out_channels),
                    };
                    Some(push_pair(&mut params, &name, shape4, out_channels, glorot))
                }
                Layer::Dense { units } => {
                    dense_no += 1;
                    let name = numbered("fc", dense_no, denses);
                    let glorot = Init::GlorotUniform {
                        fan_in: shape.len(),
                        fan_out: units,
                    };
                    Some(push_pair(
                        &mut params,
                        &name,
                        vec![units, shape.len()],
                        units,
                        glorot,
                    ))
                }
                Layer::BatchNorm => {
                    bn_no += 1;
                    let name = format!("bn{bn_no}");
                    let c = shape.channels;
                    statistics.push((steps.len(), name.clone(), c));
                    Some(push_pair(&mut params, &name, vec![c], c, Init::Ones))
                }
                _ => None,
            };
            steps.push(Step {
                layer,
                input: shape,
                output,
                weight_index,
                stats_index: None,
            });
            shape = output;
        }
        for (step, name, channels) in statistics {
            steps[step].stats_index = Some(params.len());
            for (stat, init) in [("running_mean", Init::Zeros), ("running_var", Init::Ones)] {
                params.push(ParamSpec {
                    name: format!("{name}.{stat}"),
                    shape: vec![channels],
                    init,
                    trainable: false,
                });
            }
        }
        if !shape.is_flat() || !(2..=MAX_CLASSES).contains(&shape.channels) {
            return Err(format!(
                "'{arch}' ends with {}x{}x{} outputs; it must end with denseK, one output per class (K from 2 to {MAX_CLASSES}: dense10 for digits)",
                shape.channels, shape.height, shape.width
            ));
        }
        Ok(Plan {
            arch: arch.clone(),
            input,
            steps,
            params,
        })
    }

    pub fn output(&self) -> Shape {
        self.steps.last().map_or(self.input, |s| s.output)
    }

    /// The classes the model tells apart: its output width (labels are 0 to this - 1).
    pub fn classes(&self) -> usize {
        self.output().len()
    }

    /// Elements of the trainable tensors, which come first in [`Plan::params`].
    pub fn trainable_len(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.trainable)
            .map(ParamSpec::len)
            .sum()
    }

    /// Multiply-adds of one forward pass of one example.
    pub fn forward_macs(&self) -> usize {
        self.steps.iter().map(Step::forward_macs).sum()
    }

    /// Multiply-adds of one training pass of one example: forward, weight gradients, and input
    /// gradients of every layer but the first (nothing needs the image's gradient).
    pub fn training_macs(&self) -> usize {
        let input_grads: usize = self.steps.iter().skip(1).map(Step::forward_macs).sum();
        2 * self.forward_macs() + input_grads
    }
}

impl Step {
    /// Multiply-adds of this step's forward pass for one example (its weight and input
    /// gradients cost as much each).
    pub fn forward_macs(&self) -> usize {
        match self.layer {
            Layer::Conv2d { kernel, .. } => {
                self.output.len() * self.input.channels * kernel * kernel
            }
            Layer::Dense { .. } => self.output.len() * self.input.len(),
            _ => 0,
        }
    }
}

/// A lone dense layer is `fc`, several are `fc1`, `fc2`, ...
fn numbered(prefix: &str, n: usize, total: usize) -> String {
    if total > 1 {
        format!("{prefix}{n}")
    } else {
        prefix.to_string()
    }
}

fn push_pair(
    params: &mut Vec<ParamSpec>,
    name: &str,
    weight_shape: Vec<usize>,
    bias_len: usize,
    init: Init,
) -> usize {
    params.push(ParamSpec {
        name: format!("{name}.weight"),
        shape: weight_shape,
        init,
        trainable: true,
    });
    params.push(ParamSpec {
        name: format!("{name}.bias"),
        shape: vec![bias_len],
        init: Init::Zeros,
        trainable: true,
    });
    params.len() - 2
}

fn output_shape(layer: Layer, input: Shape) -> Result<Shape, String> {
    let Shape {
        channels,
        height,
        width,
    } = input;
    match layer {
        Layer::Conv2d {
            out_channels,
            kernel,
            stride,
            padding,
        } => {
            if input.is_flat() && channels > 1 {
                return Err("a convolution cannot follow flatten".into());
            }
            let pad = conv_padding(kernel, padding);
            if kernel > height + 2 * pad || kernel > width + 2 * pad {
                return Err(format!(
                    "kernel {kernel}x{kernel} is larger than its {height}x{width} input"
                ));
            }
            let out = |size: usize| (size + 2 * pad - kernel) / stride + 1;
            Ok(Shape::new(out_channels, out(height), out(width)))
        }
        Layer::Pool2d(_) => {
            if height < 2 || width < 2 {
                return Err(format!(
                    "2x2 pooling needs at least 2x2 input, got {height}x{width}"
                ));
            }
            Ok(Shape::new(channels, height / 2, width / 2))
        }
        Layer::Activation(_) | Layer::Dropout { .. } | Layer::BatchNorm => Ok(input),
        Layer::Flatten => Ok(Shape::new(input.len(), 1, 1)),
        Layer::Dense { units } => {
            if !input.is_flat() {
                return Err(format!("dense needs flat input; add flatten before it (input is {channels}x{height}x{width})"));
            }
            Ok(Shape::new(units, 1, 1))
        }
    }
}

/// Zeros added on each side of a convolution's input.
pub fn conv_padding(kernel: usize, padding: Padding) -> usize {
    match padding {
        Padding::Valid => 0,
        Padding::Same => (kernel - 1) / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_plan_has_tutorial_shapes_and_pytorch_names() {
        let plan = Plan::new(&Arch::seed(), MNIST_INPUT).unwrap();
        let outputs: Vec<usize> = plan.steps.iter().map(|s| s.output.len()).collect();
        assert_eq!(outputs, [21632, 21632, 5408, 7744, 7744, 1600, 1600, 10]);
        let names: Vec<&str> = plan.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv1.weight",
                "conv1.bias",
                "conv2.weight",
                "conv2.bias",
                "fc.weight",
                "fc.bias"
            ]
        );
        assert_eq!(plan.params[2].shape, [64, 32, 3, 3]);
        assert_eq!(plan.params[4].shape, [10, 1600]);
        let count: usize = plan.params.iter().map(ParamSpec::len).sum();
        assert_eq!(count, 34826); // Keras' model.summary() for the tutorial CNN
        assert_eq!(plan.forward_macs(), 32 * 9 * 676 + 64 * 288 * 121 + 16000);
        // conv1 needs no input gradient: the image is not trained.
        assert_eq!(plan.training_macs(), 3 * plan.forward_macs() - 32 * 9 * 676);
    }

    #[test]
    fn odd_sizes_floor_when_pooling() {
        let arch = Arch::parse("conv4k2-pool2-flatten-dense10").unwrap();
        let plan = Plan::new(&arch, MNIST_INPUT).unwrap();
        assert_eq!(plan.steps[1].output, Shape::new(4, 13, 13));
    }

    #[test]
    fn impossible_architectures_are_explained() {
        let err = Plan::new(
            &Arch::parse("conv8k30-flatten-dense10").unwrap(),
            MNIST_INPUT,
        )
        .unwrap_err();
        assert!(
            err.contains("layer 1 'conv8k30'") && err.contains("larger"),
            "{err}"
        );
        let err = Plan::new(&Arch::parse("conv8k3-dense10").unwrap(), MNIST_INPUT).unwrap_err();
        assert!(err.contains("add flatten"), "{err}");
        let err = Plan::new(&Arch::parse("flatten-dense1").unwrap(), MNIST_INPUT).unwrap_err();
        assert!(err.contains("must end with denseK"), "{err}");
        let err = Plan::new(&Arch::parse("conv2k3").unwrap(), MNIST_INPUT).unwrap_err();
        assert!(err.contains("must end with denseK"), "{err}");
        let plan = Plan::new(&Arch::parse("flatten-dense7").unwrap(), MNIST_INPUT).unwrap();
        assert_eq!(plan.classes(), 7);
    }

    #[test]
    fn strides_padding_and_batch_norm_statistics() {
        let arch = Arch::parse("conv8k3s2same-bn-relu-conv4k5s2-flatten-dense10").unwrap();
        let plan = Plan::new(&arch, MNIST_INPUT).unwrap();
        // (28 + 2 - 3) / 2 + 1 = 14; (14 - 5) / 2 + 1 = 5
        assert_eq!(plan.steps[0].output, Shape::new(8, 14, 14));
        assert_eq!(plan.steps[3].output, Shape::new(4, 5, 5));
        let names: Vec<(&str, bool)> = plan
            .params
            .iter()
            .map(|p| (p.name.as_str(), p.trainable))
            .collect();
        assert_eq!(
            names,
            [
                ("conv1.weight", true),
                ("conv1.bias", true),
                ("bn1.weight", true),
                ("bn1.bias", true),
                ("conv2.weight", true),
                ("conv2.bias", true),
                ("fc.weight", true),
                ("fc.bias", true),
                ("bn1.running_mean", false),
                ("bn1.running_var", false),
            ]
        );
        assert_eq!(plan.steps[1].weight_index, Some(2));
        assert_eq!(plan.steps[1].stats_index, Some(8));
        assert_eq!(plan.params[2].init, Init::Ones);
        assert_eq!(plan.params[9].init, Init::Ones);
        assert_eq!(
            plan.trainable_len(),
            8 * 9 + 8 + 16 + 4 * 8 * 25 + 4 + 1000 + 10
        );
        // Strided convolutions cost their output positions only.
        assert_eq!(plan.steps[3].forward_macs(), 4 * 25 * 8 * 25);
    }
}
