//! `privacy`: what a DP-SGD run spends (docs/privacy.md): by the RDP accountant, epsilon by
//! both conversions with their best orders; by the PRV accountant, epsilon with its error
//! bounds; or, with --target-epsilon, the noise multiplier that keeps epsilon within it.

use anyhow::Result;
use clap::{ArgGroup, Args, ValueEnum};
use serde::Serialize;

use mnist_wgpu::error::bad_input;
use mnist_wgpu::privacy::calibrate::{
    noise_for_epsilon, NoiseForBudget, MAX_NOISE_MULTIPLIER, NOISE_TOLERANCE,
};
use mnist_wgpu::privacy::prv::{prv_epsilon, PrvEpsilon, DELTA_ERROR_FRACTION, EPSILON_ERROR};
use mnist_wgpu::privacy::rdp::{default_orders, PrivacySpent, SampledGaussian};
use mnist_wgpu::privacy::steps_for_epochs;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("noise").required(true).args(["noise_multiplier", "target_epsilon"])))]
#[command(group(ArgGroup::new("length").required(true).args(["steps", "epochs"])))]
pub struct PrivacyArgs {
    /// Poisson sampling rate q: the chance that an example joins a step's lot (lot size over
    /// training-set size), in (0, 1].
    #[arg(long, value_name = "Q", allow_negative_numbers = true, value_parser = Number::parse)]
    sample_rate: Number,
    /// Noise multiplier sigma: the noise's standard deviation over the clipping norm (> 0; 0
    /// adds no noise, so no epsilon is finite).
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true, value_parser = Number::parse)]
    noise_multiplier: Option<Number>,
    /// Print the smallest noise multiplier (found by bisection, to 0.01%) whose epsilon is at
    /// most E, instead of the epsilon of a given one.
    #[arg(long, value_name = "E", allow_negative_numbers = true, value_parser = Number::parse)]
    target_epsilon: Option<Number>,
    /// Number of steps (noisy gradient updates).
    #[arg(long, value_name = "S")]
    steps: Option<u64>,
    /// Number of epochs, each 1/Q steps: steps = ceil(E / Q).
    #[arg(long, value_name = "E", allow_negative_numbers = true, value_parser = Number::parse)]
    epochs: Option<Number>,
    /// Delta of (epsilon, delta)-DP, in (0, 1).
    #[arg(long, value_name = "D", default_value = "1e-5", allow_negative_numbers = true,
          value_parser = Number::parse)]
    delta: Number,
    /// rdp: Rényi DP, epsilon by two conversions; prv: privacy loss random variables composed
    /// numerically (Gopi et al. 2021), tighter, its upper bound.
    #[arg(long, value_enum, default_value_t = Accountant::Rdp)]
    accountant: Accountant,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Accountant {
    Rdp,
    Prv,
}

/// A number as given on the command line: errors quote it as typed (`1e-300`, not 300 zeros).
#[derive(Clone, Debug)]
struct Number {
    value: f64,
    text: String,
}

impl Number {
    fn parse(text: &str) -> Result<Number, String> {
        match text.parse::<f64>() {
            Ok(value) => Ok(Number {
                value,
                text: text.to_string(),
            }),
            Err(_) => Err(format!("'{text}' is not a number")),
        }
    }
}

/// `--json`'s object: the RDP accountant's fields or the PRV accountant's.
#[derive(Serialize)]
struct Report {
    accountant: &'static str,
    epsilon: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    epsilon_basic: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    best_order: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    best_order_basic: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epsilon_estimate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epsilon_lower: Option<f64>,
    delta: f64,
    noise_multiplier: f64,
    sample_rate: f64,
    steps: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_epsilon: Option<f64>,
}

/// What one accountant says of one run.
enum Spent {
    Rdp(PrivacySpent),
    Prv(PrvEpsilon),
}

impl Spent {
    /// The epsilon a budget is held to: RDP's current conversion, PRV's upper bound.
    fn epsilon(&self) -> f64 {
        match self {
            Spent::Rdp(spent) => spent.epsilon,
            Spent::Prv(prv) => prv.upper,
        }
    }
}

/// What `accountant` says of the run; an error where the PRV accountant cannot answer.
fn account(
    accountant: Accountant,
    mechanism: &SampledGaussian,
    delta: f64,
) -> Result<Spent, String> {
    match accountant {
        Accountant::Rdp => Ok(Spent::Rdp(
            mechanism.privacy_spent(delta, &default_orders()),
        )),
        Accountant::Prv => prv_epsilon(mechanism, delta).map(Spent::Prv),
    }
}

pub fn privacy(args: PrivacyArgs) -> Result<()> {
    let q = args.sample_rate.value;
    if !(q > 0.0 && q <= 1.0) {
        let text = &args.sample_rate.text;
        return Err(bad_input(format!(
            "--sample-rate {text}: must be in (0, 1]"
        )));
    }
    let delta = args.delta.value;
    if !(delta > 0.0 && delta < 1.0) {
        let text = &args.delta.text;
        return Err(bad_input(format!("--delta {text}: must be in (0, 1)")));
    }
    let steps = steps(&args)?;
    let mechanism = |noise_multiplier| SampledGaussian {
        sample_rate: q,
        noise_multiplier,
        steps,
    };
    let noise_multiplier = match (&args.noise_multiplier, &args.target_epsilon) {
        (Some(given), _) => noise_multiplier(given)?,
        (None, Some(Number { value, text })) => {
            let target = *value;
            if !(target > 0.0 && target.is_finite()) {
                return Err(bad_input(format!(
                    "--target-epsilon {text}: must be a number > 0"
                )));
            }
            // Where the PRV accountant cannot answer, that noise counts as missing the target.
            let epsilon_of = |sigma| {
                account(args.accountant, &mechanism(sigma), delta).map_or(f64::NAN, |s| s.epsilon())
            };
            match noise_for_epsilon(target, epsilon_of) {
                NoiseForBudget::Found {
                    noise_multiplier, ..
                } => noise_multiplier,
                NoiseForBudget::Unreachable { epsilon_at_max } => {
                    return Err(bad_input(format!(
                        "--target-epsilon {text}: cannot be reached: even noise multiplier \
                         {MAX_NOISE_MULTIPLIER:e} (the largest tried) gives epsilon \
                         {epsilon_at_max:.4} over {steps} steps at this sample rate and delta"
                    )))
                }
            }
        }
        (None, None) => unreachable!("clap requires one of the group"),
    };
    let spent = account(args.accountant, &mechanism(noise_multiplier), delta)
        .map_err(|why| bad_input(format!("--accountant prv: {why}")))?;
    let mut report = Report {
        accountant: "rdp",
        epsilon: spent.epsilon(),
        epsilon_basic: None,
        best_order: None,
        best_order_basic: None,
        epsilon_estimate: None,
        epsilon_lower: None,
        delta,
        noise_multiplier,
        sample_rate: q,
        steps,
        target_epsilon: args.target_epsilon.as_ref().map(|t| t.value),
    };
    match &spent {
        Spent::Rdp(rdp) => {
            report.epsilon_basic = Some(rdp.epsilon_basic);
            report.best_order = Some(rdp.best_order);
            report.best_order_basic = Some(rdp.best_order_basic);
        }
        Spent::Prv(prv) => {
            report.accountant = "prv";
            report.epsilon_estimate = Some(prv.estimate);
            report.epsilon_lower = Some(prv.lower);
        }
    }
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report, &spent, args.epochs.map(|e| e.value));
    }
    Ok(())
}

/// The steps, given or from the epochs (see `steps_for_epochs` for the rounding).
fn steps(args: &PrivacyArgs) -> Result<u64> {
    match (args.steps, &args.epochs) {
        (Some(0), _) => Err(bad_input("--steps 0: must be at least 1")),
        (Some(steps), _) => Ok(steps),
        (None, Some(Number { value, text })) => {
            if !(*value > 0.0 && value.is_finite()) {
                return Err(bad_input(format!("--epochs {text}: must be a number > 0")));
            }
            steps_for_epochs(*value, args.sample_rate.value).ok_or_else(|| {
                bad_input(format!(
                    "--epochs {text}: {text} / {} steps is more than a u64 holds",
                    args.sample_rate.text
                ))
            })
        }
        (None, None) => unreachable!("clap requires one of the group"),
    }
}

/// The noise multiplier, which must be positive: 0 is refused with its meaning (epsilon is
/// infinite) rather than printed as "inf".
fn noise_multiplier(given: &Number) -> Result<f64> {
    let (sigma, text) = (given.value, &given.text);
    if sigma == 0.0 {
        return Err(bad_input(format!(
            "--noise-multiplier {text}: no noise means no privacy (epsilon is infinite); \
             give a noise multiplier > 0"
        )));
    }
    if !(sigma > 0.0 && sigma.is_finite()) {
        return Err(bad_input(format!(
            "--noise-multiplier {text}: must be a number > 0"
        )));
    }
    Ok(sigma)
}

fn print_text(report: &Report, spent: &Spent, epochs: Option<f64>) {
    let length = match epochs {
        Some(e) => format!(
            "{} steps ({e} epochs of 1/{} steps, rounded up)",
            report.steps, report.sample_rate
        ),
        None => format!("{} steps", report.steps),
    };
    outln!(
        "{} accountant: sample rate {}, {length}, delta {:e}",
        report.accountant.to_uppercase(),
        report.sample_rate,
        report.delta
    );
    if let Some(target) = report.target_epsilon {
        outln!(
            "noise multiplier {} (the smallest, to {}%, with epsilon <= {target})",
            report.noise_multiplier,
            NOISE_TOLERANCE * 100.0
        );
    } else {
        outln!("noise multiplier {}", report.noise_multiplier);
    }
    match spent {
        Spent::Rdp(rdp) => {
            outln!(
                "epsilon       {:.6} (best order {}; conversion of Balle et al. 2020, as Opacus)",
                rdp.epsilon,
                rdp.best_order
            );
            outln!(
                "epsilon_basic {:.6} (best order {}; conversion of Mironov 2017, log(1/delta)/(order-1))",
                rdp.epsilon_basic,
                rdp.best_order_basic
            );
            note_edge_order(rdp.best_order, &default_orders());
        }
        Spent::Prv(prv) => outln!(
            "epsilon       {:.6} (upper bound; estimate {:.6}, lower bound {:.6}; errors allowed: \
             {EPSILON_ERROR} in epsilon, delta * {DELTA_ERROR_FRACTION} in delta)",
            prv.upper,
            prv.estimate,
            prv.lower
        ),
    }
}

/// As Opacus warns: a best order at either end of the range means a wider range might give a
/// smaller epsilon.
fn note_edge_order(best_order: f64, orders: &[f64]) {
    let (first, last) = (orders[0], orders[orders.len() - 1]);
    let end = match best_order {
        o if o == first => "smallest",
        o if o == last => "largest",
        _ => return,
    };
    outln!(
        "note: the best order is the {end} of the orders ({first} to {last}); epsilon might be \
         smaller with a wider range"
    );
}
