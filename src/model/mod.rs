//! The model description: layers, shapes and parameters. Knows nothing about devices.

mod arch;
mod params;
mod plan;
pub mod quant;
pub mod transfer;

pub use arch::{spec_from_file, Activation, Arch, Layer, Padding, Pool, PRESETS};
pub use params::{init_params, Params, Tensor};
pub use plan::{conv_padding, Init, ParamSpec, Plan, Shape, Step, MAX_CLASSES, MNIST_INPUT};
