//! Property tests of the round trips: an architecture printed and parsed again, a spec file
//! read back, and checkpoints (plain and training) written and read again. Each holds for
//! every value proptest generates, not for a few chosen ones.

use mnist_wgpu::backend::OptimizerState;
use mnist_wgpu::checkpoint::{
    load_checkpoint, load_training_checkpoint, save_checkpoint, save_training_checkpoint,
};
use mnist_wgpu::checkpoint_int8::{load_int8_checkpoint, save_int8_checkpoint};
use mnist_wgpu::model::{
    init_params, spec_from_file, Activation, Arch, Layer, Padding, Params, Plan, Pool, MNIST_INPUT,
};
use mnist_wgpu::quantize::{quantize, Calibration, QuantizeOptions};
use proptest::prelude::*;

fn layer() -> impl Strategy<Value = Layer> {
    prop_oneof![
        (1usize..200, 1usize..8, 1usize..4, any::<bool>()).prop_map(|(c, k, s, same)| {
            // Same padding needs an odd kernel.
            let same = same && k % 2 == 1;
            Layer::Conv2d {
                out_channels: c,
                kernel: k,
                stride: s,
                padding: if same { Padding::Same } else { Padding::Valid },
            }
        }),
        prop_oneof![
            Just(Activation::Relu),
            Just(Activation::Sigmoid),
            Just(Activation::Tanh)
        ]
        .prop_map(Layer::Activation),
        prop_oneof![Just(Pool::Max), Just(Pool::Avg)].prop_map(Layer::Pool2d),
        (0.0f32..1.0).prop_map(|rate| Layer::Dropout { rate }),
        Just(Layer::BatchNorm),
        Just(Layer::Flatten),
        (1usize..5000).prop_map(|units| Layer::Dense { units }),
    ]
}

fn arch() -> impl Strategy<Value = Arch> {
    prop::collection::vec(layer(), 1..12).prop_map(|layers| Arch { layers })
}

/// A small model that builds on MNIST's input: convolutions, then a classifier.
fn small_plan() -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec((1usize..6, 1usize..6, any::<bool>(), any::<bool>()), 0..3),
        prop::collection::vec(1usize..20, 0..2),
        any::<bool>(),
    )
        .prop_filter_map("builds on 28x28", |(convs, hidden, bn)| {
            let mut layers = Vec::new();
            for (channels, kernel, pool, relu) in convs {
                layers.push(Layer::conv(channels, kernel));
                if bn {
                    layers.push(Layer::BatchNorm);
                }
                if relu {
                    layers.push(Layer::Activation(Activation::Relu));
                }
                if pool {
                    layers.push(Layer::Pool2d(Pool::Max));
                }
            }
            layers.push(Layer::Flatten);
            for units in hidden {
                layers.push(Layer::Dense { units });
                layers.push(Layer::Activation(Activation::Tanh));
            }
            layers.push(Layer::Dense { units: 10 });
            Plan::new(&Arch { layers }, MNIST_INPUT).ok()
        })
}

/// `params` with every value replaced by arbitrary bits (NaN, infinities and subnormals
/// included: a checkpoint stores what it is given).
fn scrambled(params: &Params<f32>, bits: &[u32]) -> Params<f32> {
    let mut params = params.clone();
    let mut i = 0;
    for t in &mut params.tensors {
        for x in &mut t.data {
            *x = f32::from_bits(bits[i % bits.len()].wrapping_mul(i as u32 + 1));
            i += 1;
        }
    }
    params
}

fn bits(params: &Params<f32>) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    let tensors = params.tensors.iter();
    tensors
        .map(|t| {
            let data = t.data.iter().map(|x| x.to_bits()).collect();
            (t.name.clone(), t.shape.clone(), data)
        })
        .collect()
}

proptest! {
    #[test]
    fn an_arch_printed_parses_back_to_itself(arch in arch()) {
        let spec = arch.to_string();
        prop_assert_eq!(Arch::parse(&spec), Ok(arch.clone()), "{}", spec);
        // The same spec as a file, a layer a line with comments, reads back too.
        let file: String = arch
            .layers
            .iter()
            .map(|l| format!("  {l}  # a comment\n\n"))
            .collect();
        prop_assert_eq!(spec_from_file(&file), spec);
    }

    #[test]
    fn parsing_what_was_parsed_changes_nothing(tokens in prop::collection::vec(
        prop_oneof![
            "conv[0-9]{1,3}k[0-9](s[0-9])?(same|valid)?",
            "(relu|sigmoid|tanh|pool2|maxpool2|avgpool2|bn|batchnorm|flatten)",
            "dense[0-9]{1,4}",
            "dropout0\\.[0-9]{1,6}",
        ],
        1..10,
    )) {
        let spec = tokens.join("-");
        if let Ok(arch) = Arch::parse(&spec) {
            prop_assert_eq!(Arch::parse(&arch.to_string()), Ok(arch));
        }
    }

    #[test]
    fn a_checkpoint_reads_back_what_was_written(
        plan in small_plan(),
        seed in any::<u64>(),
        values in prop::collection::vec(any::<u32>(), 1..64),
        // A map: one value a key, as metadata is.
        metadata in prop::collection::btree_map("[a-z_]{1,12}", "\\PC{0,40}", 0..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let params = scrambled(&init_params(&plan, seed), &values);
        let extra: Vec<(&str, String)> = metadata
            .iter()
            .filter(|(k, _)| !["format", "arch", "flatten_order"].contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        save_checkpoint(&path, &plan, &params, &extra).unwrap();
        let loaded = load_checkpoint(&path).unwrap();
        prop_assert_eq!(&loaded.plan, &plan);
        prop_assert_eq!(bits(&loaded.params), bits(&params));
        for (key, value) in &extra {
            prop_assert_eq!(&loaded.metadata[*key], value);
        }
    }

    #[test]
    fn a_training_checkpoint_reads_back_what_was_written(
        plan in small_plan(),
        seed in any::<u64>(),
        step in any::<u32>(),
        values in prop::collection::vec(any::<u32>(), 1..64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        let params = init_params(&plan, seed);
        let optimizer = OptimizerState {
            step,
            m: scrambled(&params, &values),
            v: scrambled(&params, &values[1..].iter().chain(&values[..1]).copied().collect::<Vec<_>>()),
        };
        save_training_checkpoint(&path, &plan, &params, &optimizer, &[]).unwrap();
        let loaded = load_training_checkpoint(&path).unwrap();
        prop_assert_eq!(&loaded.checkpoint.plan, &plan);
        prop_assert_eq!(bits(&loaded.checkpoint.params), bits(&params));
        prop_assert_eq!(loaded.optimizer.step, step);
        prop_assert_eq!(bits(&loaded.optimizer.m), bits(&optimizer.m));
        prop_assert_eq!(bits(&loaded.optimizer.v), bits(&optimizer.v));
    }

    #[test]
    fn an_int8_checkpoint_reads_back_what_was_written(
        plan in small_plan().prop_filter("int8 needs relu networks", |p| {
            !p.arch.layers.contains(&Layer::Activation(Activation::Tanh))
        }),
        seed in any::<u64>(),
        values in prop::collection::vec(any::<u32>(), 1..64),
        classes in any::<bool>(),
    ) {
        let images: Vec<u8> = (0..2 * 784).map(|i| values[i % values.len()] as u8).collect();
        let options = QuantizeOptions { calibration: Calibration::MinMax, per_tensor: false };
        let mut model = quantize(&plan, &init_params(&plan, seed), &images, options).unwrap();
        // Any values the format allows: weights in [-127, 127], positive finite scales,
        // biases within 2^30.
        let mut next = {
            let mut i = 0usize;
            move || { i += 1; values[i % values.len()].wrapping_mul(i as u32 * 2654435761) }
        };
        let scale = |bits: u32| {
            let s = f32::from_bits(bits & 0x7fff_ffff);
            if s.is_finite() && s > 0.0 { s } else { 1.5 }
        };
        for l in &mut model.layers {
            l.weight.iter_mut().for_each(|q| *q = ((next() % 255) as i32 - 127) as i8);
            l.bias.iter_mut().for_each(|b| *b = (next() % (1 << 31)) as i32 - (1 << 30));
            l.weight_scale.iter_mut().for_each(|s| *s = scale(next()));
            l.input_scale = scale(next());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("int8.safetensors");
        let extra = match classes {
            true => vec![("classes", "9,1,2,3,4,5,6,7,8,0".to_string())],
            false => vec![],
        };
        save_int8_checkpoint(&path, &model, &extra).unwrap();
        let loaded = load_int8_checkpoint(&path).unwrap();
        prop_assert_eq!(&loaded.model, &model);
        prop_assert_eq!(loaded.labels[0], if classes { 9 } else { 0 });
    }
}
