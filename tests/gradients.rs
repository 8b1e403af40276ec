//! Every CPU op's backward pass against central finite differences, in f64.
//!
//! Each op is wrapped in a scalar loss `L = sum(r * op(inputs))` with fixed random `r`, so the
//! analytic input gradient is the op's backward applied to `dy = r`.

use mnist_wgpu::cpu::activation::{activation_backward, activation_forward};
use mnist_wgpu::cpu::batchnorm::{batchnorm_backward, batchnorm_forward_training};
use mnist_wgpu::cpu::conv2d::{
    conv2d_backward_input, conv2d_backward_weights, conv2d_forward, Conv2dGeometry,
};
use mnist_wgpu::cpu::dense::{
    dense_backward_input, dense_backward_weights, dense_forward, DenseGeometry,
};
use mnist_wgpu::cpu::distill::{distillation_loss, Distill};
use mnist_wgpu::cpu::dropout::{dropout_forward, DropoutKey};
use mnist_wgpu::cpu::network::{gradients, logits, StepKey, Workspace};
use mnist_wgpu::cpu::pool2d::{
    avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward, pool2d_output,
};
use mnist_wgpu::cpu::softmax_xent::softmax_cross_entropy;
use mnist_wgpu::model::{init_params, Activation, Arch, Params, Plan, Shape};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const H: f64 = 1e-5;
/// Central differences in f64 are good to about 1e-9 here; 1e-6 still catches any wrong term.
const REL_TOL: f64 = 1e-6;
const ABS_TOL: f64 = 1e-8;

fn random(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Compares `analytic` with the central difference of `loss` at every element of `x`.
fn check(what: &str, x: &[f64], analytic: &[f64], loss: impl Fn(&[f64]) -> f64) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
    let mut probe = x.to_vec();
    for i in 0..x.len() {
        probe[i] = x[i] + H;
        let up = loss(&probe);
        probe[i] = x[i] - H;
        let down = loss(&probe);
        probe[i] = x[i];
        let numeric = (up - down) / (2.0 * H);
        let err = (analytic[i] - numeric).abs();
        assert!(
            err <= ABS_TOL + REL_TOL * numeric.abs(),
            "{what}[{i}]: analytic {} vs numeric {numeric} (error {err:e})",
            analytic[i]
        );
    }
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    check_conv2d(Conv2dGeometry::new(Shape::new(3, 6, 5), 4, 3));
}

#[test]
fn strided_and_padded_conv2d_gradients_match_finite_differences() {
    let g = Conv2dGeometry::new(Shape::new(3, 7, 6), 4, 3);
    check_conv2d(Conv2dGeometry {
        stride: 2,
        pad: 1,
        ..g
    });
    check_conv2d(Conv2dGeometry {
        stride: 1,
        pad: 1,
        ..g
    });
    // Stride 3 with a k2 kernel skips inputs, whose gradient must be 0.
    check_conv2d(Conv2dGeometry {
        stride: 3,
        pad: 0,
        kernel: 2,
        ..g
    });
}

fn check_conv2d(g: Conv2dGeometry) {
    let n = 2;
    let weights = g.out_channels * g.input.channels * g.kernel * g.kernel;
    let (x, w, b) = (
        random(n * g.input.len(), 1),
        random(weights, 2),
        random(g.out_channels, 3),
    );
    let r = random(n * g.output().len(), 4);
    let conv = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut y = vec![0.0; r.len()];
        conv2d_forward(g, x, w, b, &mut y);
        dot(&y, &r)
    };
    let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; b.len()], vec![0.0; x.len()]);
    conv2d_backward_weights(g, &x, &r, &mut dw, &mut db);
    conv2d_backward_input(g, &r, &w, &mut dx);
    check("conv2d dw", &w, &dw, |w| conv(&x, w, &b));
    check("conv2d db", &b, &db, |b| conv(&x, &w, b));
    check("conv2d dx", &x, &dx, |x| conv(x, &w, &b));
}

#[test]
fn conv2d_weight_gradient_sums_over_the_batch() {
    let g = Conv2dGeometry::new(Shape::new(2, 5, 5), 3, 2);
    let n = 9;
    let (x, w, b) = (
        random(n * g.input.len(), 5),
        random(3 * 2 * 4, 6),
        random(3, 7),
    );
    let r = random(n * g.output().len(), 8);
    let (mut dw, mut db) = (vec![0.0; w.len()], vec![0.0; b.len()]);
    conv2d_backward_weights(g, &x, &r, &mut dw, &mut db);
    let conv = |w: &[f64], b: &[f64]| {
        let mut y = vec![0.0; r.len()];
        conv2d_forward(g, &x, w, b, &mut y);
        dot(&y, &r)
    };
    check("conv2d dw (9 images)", &w, &dw, |w| conv(w, &b));
    check("conv2d db (9 images)", &b, &db, |b| conv(&w, b));
}

#[test]
fn maxpool2d_gradient_matches_finite_differences_with_odd_sizes() {
    let input = Shape::new(2, 5, 7);
    let n = 3;
    let x = random(n * input.len(), 9);
    let out_len = n * pool2d_output(input).len();
    let r = random(out_len, 10);
    let pool = |x: &[f64]| {
        let (mut y, mut argmax) = (vec![0.0; out_len], vec![0; out_len]);
        maxpool2d_forward(input, x, &mut y, &mut argmax);
        (y, argmax)
    };
    let (_, argmax) = pool(&x);
    let mut dx = vec![0.0; x.len()];
    maxpool2d_backward(input, &r, &argmax, &mut dx);
    check("maxpool2d dx", &x, &dx, |x| dot(&pool(x).0, &r));
    // The dropped last row and column of an odd-sized input get no gradient.
    assert!((0..n * 2).all(|plane| dx[plane * 35 + 34] == 0.0));
}

#[test]
fn avgpool2d_gradient_matches_finite_differences_with_odd_sizes() {
    let input = Shape::new(2, 5, 7);
    let n = 3;
    let x = random(n * input.len(), 9);
    let out_len = n * pool2d_output(input).len();
    let r = random(out_len, 10);
    let pool = |x: &[f64]| {
        let mut y = vec![0.0; out_len];
        avgpool2d_forward(input, x, &mut y);
        y
    };
    let mut dx = vec![0.0; x.len()];
    avgpool2d_backward(input, &r, &mut dx);
    check("avgpool2d dx", &x, &dx, |x| dot(&pool(x), &r));
    assert!((0..n * 2).all(|plane| dx[plane * 35 + 34] == 0.0));
}

#[test]
fn activation_gradients_match_finite_differences() {
    // Keep inputs away from ReLU's kink at 0, where the derivative is undefined.
    let x: Vec<f64> = random(50, 11)
        .into_iter()
        .map(|v| 3.0 * if v.abs() < 1e-3 { 0.5 } else { v })
        .collect();
    let r = random(50, 12);
    for a in [Activation::Relu, Activation::Sigmoid, Activation::Tanh] {
        let f = |x: &[f64]| {
            let mut y = vec![0.0; x.len()];
            activation_forward(a, x, &mut y);
            y
        };
        let mut dx = vec![0.0; 50];
        activation_backward(a, &f(&x), &r, &mut dx);
        check(&format!("{a} dx"), &x, &dx, |x| dot(&f(x), &r));
    }
}

#[test]
fn batchnorm_gradients_match_finite_differences() {
    // Per channel of 4-D activations, and per feature of flat ones.
    for (shape, n) in [(Shape::new(3, 4, 5), 2), (Shape::new(6, 1, 1), 5)] {
        let c = shape.channels;
        let x: Vec<f64> = random(n * shape.len(), 30)
            .iter()
            .map(|v| 2.0 * v + 0.5)
            .collect();
        let (gamma, beta) = (random(c, 31), random(c, 32));
        let r = random(x.len(), 33);
        let bn = |x: &[f64], gamma: &[f64], beta: &[f64]| {
            let mut y = vec![0.0; x.len()];
            batchnorm_forward_training(shape, x, (gamma, beta), &mut y);
            dot(&y, &r)
        };
        let mut y = vec![0.0; x.len()];
        let mut stats = batchnorm_forward_training(shape, &x, (&gamma, &beta), &mut y);
        let mut dx = vec![0.0; x.len()];
        batchnorm_backward(shape, &x, &r, &gamma, &mut stats, &mut dx);
        check("batchnorm dx", &x, &dx, |x| bn(x, &gamma, &beta));
        check("batchnorm dgamma", &gamma, &stats.dgamma, |g| {
            bn(&x, g, &beta)
        });
        check("batchnorm dbeta", &beta, &stats.dbeta, |b| {
            bn(&x, &gamma, b)
        });
    }
}

#[test]
fn dropout_gradient_is_its_mask() {
    let key = DropoutKey {
        seed: 9,
        step: 4,
        layer: 1,
        first_image: 3,
    };
    let (x, r) = (random(3 * 40, 34), random(3 * 40, 35));
    let drop = |x: &[f64]| {
        let mut y = vec![0.0; x.len()];
        dropout_forward(0.3, &key, 40, x, &mut y);
        y
    };
    let mut dx = vec![0.0; x.len()];
    dropout_forward(0.3, &key, 40, &r, &mut dx);
    check("dropout dx", &x, &dx, |x| dot(&drop(x), &r));
    assert!(dx.contains(&0.0) && dx.iter().any(|&g| g != 0.0));
}

#[test]
fn dense_gradients_match_finite_differences() {
    let g = DenseGeometry {
        inputs: 7,
        outputs: 5,
    };
    let n = 3;
    let (x, w, b) = (random(n * 7, 13), random(35, 14), random(5, 15));
    let r = random(n * 5, 16);
    let dense = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut y = vec![0.0; n * 5];
        dense_forward(g, x, w, b, &mut y);
        dot(&y, &r)
    };
    let (mut dw, mut db, mut dx) = (vec![0.0; 35], vec![0.0; 5], vec![0.0; n * 7]);
    dense_backward_weights(g, &x, &r, &mut dw, &mut db);
    dense_backward_input(g, &r, &w, &mut dx);
    check("dense dw", &w, &dw, |w| dense(&x, w, &b));
    check("dense db", &b, &db, |b| dense(&x, &w, b));
    check("dense dx", &x, &dx, |x| dense(x, &w, &b));
}

#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences() {
    let n = 4;
    // Large logits exercise the log-sum-exp shift.
    let logits: Vec<f64> = random(n * 10, 17).into_iter().map(|z| 30.0 * z).collect();
    let labels = [3u8, 0, 9, 3];
    let mean_loss = |z: &[f64]| softmax_cross_entropy(10, z, &labels, None).loss_sum / n as f64;
    let mut dz = vec![0.0; n * 10];
    let sums = softmax_cross_entropy(10, &logits, &labels, Some(&mut dz));
    assert!(sums.loss_sum.is_finite());
    check("softmax_xent dlogits", &logits, &dz, mean_loss);
}

/// Every temperature and weight the cross-checks use, on 10 and 3 classes, with logits large
/// enough to need the log-sum-exp shift at T = 1.
#[test]
fn distillation_loss_gradient_matches_finite_differences() {
    let n = 3;
    for classes in [10usize, 3] {
        for temperature in [1.0, 4.0, 20.0] {
            for alpha in [0.0, 0.5, 1.0] {
                let seed = classes as u64 * 100 + temperature as u64;
                let student: Vec<f64> =
                    random(n * classes, seed).iter().map(|z| 30.0 * z).collect();
                let teacher: Vec<f64> = random(n * classes, seed + 1)
                    .iter()
                    .map(|z| 30.0 * z)
                    .collect();
                let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
                let labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..classes as u8)).collect();
                let distill = Distill { temperature, alpha };
                let mean_loss = |z: &[f64]| {
                    distillation_loss(classes, z, &teacher, &labels, distill, None).loss_sum
                        / n as f64
                };
                let mut dz = vec![0.0; n * classes];
                let sums =
                    distillation_loss(classes, &student, &teacher, &labels, distill, Some(&mut dz));
                assert!(sums.loss_sum.is_finite());
                let what =
                    format!("distill dlogits ({classes} classes, T {temperature}, alpha {alpha})");
                check(&what, &student, &dz, mean_loss);
            }
        }
    }
}

/// With alpha 0 the teacher is ignored: the loss and gradient are the hard loss's.
#[test]
fn distillation_loss_with_alpha_0_is_the_cross_entropy() {
    let n = 5;
    let student: Vec<f64> = random(n * 10, 31).into_iter().map(|z| 8.0 * z).collect();
    let teacher = random(n * 10, 32);
    let labels = [1u8, 7, 7, 0, 9];
    let distill = Distill {
        temperature: 4.0,
        alpha: 0.0,
    };
    let (mut d_distill, mut d_hard) = (vec![0.0; n * 10], vec![0.0; n * 10]);
    let soft = distillation_loss(
        10,
        &student,
        &teacher,
        &labels,
        distill,
        Some(&mut d_distill),
    );
    let hard = softmax_cross_entropy(10, &student, &labels, Some(&mut d_hard));
    assert_eq!(soft, hard);
    assert_eq!(d_distill, d_hard);
}

#[test]
fn whole_network_gradients_match_finite_differences() {
    let arch = Arch::parse("conv3k3-relu-pool2-conv4k2-relu-flatten-dense10").unwrap();
    let plan = Plan::new(&arch, Shape::new(1, 10, 9)).unwrap();
    let params = init_params(&plan, 5).map(f64::from);
    // Six images span two of the network's chunks, the last one partial.
    let n = 6;
    let x: Vec<f64> = random(n * 90, 18).into_iter().map(|v| v.abs()).collect();
    let labels = [1u8, 7, 4, 0, 9, 2];
    let loss_of = |params: &Params<f64>, x: &[f64]| {
        let logits = logits(&plan, params, x, &Workspace::new(&plan));
        softmax_cross_entropy(10, &logits, &labels, None).loss_sum / n as f64
    };
    let key = StepKey { seed: 1, step: 1 };
    check_network(&plan, &params, (&x, &labels), key, &[], loss_of);
}

/// Batch norm (after a conv and after a dense layer), dropout, average pooling, sigmoid, tanh
/// and a strided padded convolution, through the training loss itself: batch statistics and a
/// fixed dropout mask make it a smooth function of the parameters and the input. Ten images
/// span three chunks, so batch norm's sums over chunks are checked too.
#[test]
fn training_mode_network_gradients_match_finite_differences() {
    let arch = Arch::parse(
        "conv3k3s2same-bn-tanh-conv4k2-sigmoid-avgpool2-dropout0.3-flatten-dense6-bn-relu-dense10",
    )
    .unwrap();
    let plan = Plan::new(&arch, Shape::new(1, 10, 9)).unwrap();
    let mut params = init_params(&plan, 5).map(f64::from);
    // Batch norm starts at gamma 1, beta 0: perturb them so every term is exercised.
    for (t, spec) in plan.params.iter().enumerate() {
        if spec.name.starts_with("bn") && spec.trainable {
            let noise = random(spec.len(), 40 + t as u64);
            params.tensors[t]
                .data
                .iter_mut()
                .zip(noise)
                .for_each(|(p, v)| *p += 0.3 * v);
        }
    }
    let n = 10;
    let x: Vec<f64> = random(n * 90, 18).into_iter().map(|v| v.abs()).collect();
    let labels = [1u8, 7, 4, 0, 9, 2, 2, 5, 3, 8];
    let key = StepKey { seed: 77, step: 3 };
    let loss_of = |params: &Params<f64>, x: &[f64]| {
        let mut ws = Workspace::new(&plan);
        gradients(&plan, params, (x, &labels), key, None, &mut ws).loss_sum / n as f64
    };
    check_network(&plan, &params, (&x, &labels), key, &[], loss_of);
}

/// A frozen batch norm trains in inference mode (as Keras runs one): the training loss through
/// its running statistics, taken as constants, with the other batch norm on batch statistics.
#[test]
fn a_frozen_batch_norm_s_gradients_match_finite_differences() {
    let arch = Arch::parse("conv3k3s2same-bn-tanh-flatten-dense6-bn-relu-dense10").unwrap();
    let plan = Plan::new(&arch, Shape::new(1, 10, 9)).unwrap();
    let mut params = init_params(&plan, 6).map(f64::from);
    for (t, spec) in plan.params.iter().enumerate() {
        if spec.name.starts_with("bn") {
            let noise = random(spec.len(), 50 + t as u64);
            let tensor = params.tensors[t].data.iter_mut().zip(noise);
            // Keep the running variances positive.
            tensor.for_each(|(p, v)| *p += 0.3 * v.abs());
        }
    }
    // Step 1 is the first batch norm.
    let frozen: Vec<bool> = (0..plan.steps.len()).map(|i| i == 1).collect();
    let n = 10;
    let x: Vec<f64> = random(n * 90, 19).into_iter().map(|v| v.abs()).collect();
    let labels = [1u8, 7, 4, 0, 9, 2, 2, 5, 3, 8];
    let key = StepKey { seed: 7, step: 2 };
    let loss_of = |params: &Params<f64>, x: &[f64]| {
        let mut ws = Workspace::new(&plan);
        ws.frozen_batch_norm.clone_from(&frozen);
        gradients(&plan, params, (x, &labels), key, None, &mut ws).loss_sum / n as f64
    };
    check_network(&plan, &params, (&x, &labels), key, &frozen, loss_of);
}

/// Every parameter gradient and the input gradient of `gradients` against finite differences
/// of `loss_of(params, x)`, with `frozen_batch_norm` (by step) in inference mode; the running
/// statistics, which have no gradient, are left out when some are.
fn check_network(
    plan: &Plan,
    params: &Params<f64>,
    (x, labels): (&[f64], &[u8]),
    key: StepKey,
    frozen_batch_norm: &[bool],
    loss_of: impl Fn(&Params<f64>, &[f64]) -> f64,
) {
    let mut ws = Workspace::new(plan);
    if !frozen_batch_norm.is_empty() {
        ws.frozen_batch_norm = frozen_batch_norm.to_vec();
    }
    let mut dx = vec![0.0; x.len()];
    gradients(plan, params, (x, labels), key, Some(&mut dx), &mut ws);
    for (t, tensor) in params.tensors.iter().enumerate() {
        if !frozen_batch_norm.is_empty() && !plan.params[t].trainable {
            continue;
        }
        check(
            &tensor.name,
            &tensor.data,
            &ws.grads.tensors[t].data,
            |data| {
                let mut p = params.clone();
                p.tensors[t].data.copy_from_slice(data);
                loss_of(&p, x)
            },
        );
    }
    check("network dx", x, &dx, |x| loss_of(params, x));
}
