//! The model description: layers, shapes and parameters. Knows nothing about devices.

mod arch;
mod params;
mod plan;

pub use arch::{augments_by_default, Arch, Layer, PRESETS};
pub use params::{init_params, Params, Tensor};
pub use plan::{Init, ParamSpec, Plan, Shape, Step, MNIST_INPUT, NUM_CLASSES};
