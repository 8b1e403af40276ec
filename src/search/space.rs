//! The search space file (TOML): each key is a training setting, each value either fixed or a
//! distribution to draw from.
//!
//! ```toml
//! optimizer = "adam"                        # fixed in every trial
//! lr = { log_uniform = [1e-4, 1e-2] }       # drawn on a log scale
//! batch_size = { choice = [32, 64, 128] }   # one of these
//! dropout = { uniform = [0.0, 0.5] }        # drawn uniformly
//! epochs_hint = { int_uniform = [1, 4] }    # a whole number, both ends included
//! ```
//!
//! Which keys exist is the caller's to say (the command line knows its flags); this module
//! only checks the values.

use std::collections::BTreeMap;
use std::fmt;

use rand::{RngExt, SeedableRng};

/// One setting's value in a trial.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            _ => None,
        }
    }
}

/// How a setting varies from trial to trial.
#[derive(Clone, Debug, PartialEq)]
pub enum Distribution {
    Fixed(Value),
    Choice(Vec<Value>),
    Uniform(f64, f64),
    LogUniform(f64, f64),
    IntUniform(i64, i64),
}

/// A trial's settings, by key (sorted, so that every listing is in one order).
pub type Params = BTreeMap<String, Value>;

/// A parsed space: every key with its distribution.
#[derive(Clone, Debug, PartialEq)]
pub struct Space {
    pub params: BTreeMap<String, Distribution>,
}

impl Space {
    /// Parses a space file's text. `known` lists the keys that may appear; an error names the
    /// key and says what is wrong with it.
    pub fn parse(text: &str, known: &[&str]) -> Result<Space, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            match e.span().map(|s| line_of(text, s.start)) {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            }
        })?;
        let mut params = BTreeMap::new();
        for (key, value) in table {
            if !known.contains(&key.as_str()) {
                let mut names = known.to_vec();
                names.sort_unstable();
                return Err(format!(
                    "unknown key '{key}'; known keys: {}",
                    names.join(", ")
                ));
            }
            let distribution = distribution(&value).map_err(|why| format!("{key}: {why}"))?;
            params.insert(key, distribution);
        }
        Ok(Space { params })
    }

    /// Every combination of the choice lists, in a fixed order (the keys sorted, the last
    /// key varying fastest); fixed values are in every one. A continuous distribution has no
    /// grid: the error names it.
    pub fn grid(&self) -> Result<Vec<Params>, String> {
        let mut trials = vec![Params::new()];
        for (key, distribution) in &self.params {
            let values = match distribution {
                Distribution::Fixed(v) => vec![v.clone()],
                Distribution::Choice(values) => values.clone(),
                _ => {
                    return Err(format!(
                        "{key}: a grid needs a fixed value or a choice list, not a range"
                    ))
                }
            };
            trials = trials
                .into_iter()
                .flat_map(|t| {
                    values.iter().map(move |v| {
                        let mut t = t.clone();
                        t.insert(key.clone(), v.clone());
                        t
                    })
                })
                .collect();
        }
        Ok(trials)
    }

    /// How many trials the grid has (without building it): the product of the choice lists'
    /// lengths, saturating.
    pub fn grid_size(&self) -> usize {
        self.params
            .values()
            .map(|d| match d {
                Distribution::Choice(values) => values.len(),
                _ => 1,
            })
            .fold(1usize, usize::saturating_mul)
    }

    /// `n` trials drawn independently from the distributions, the same for the same seed.
    /// Drawn real numbers keep four significant digits, so that a trial reads (and can be
    /// typed again) as it ran.
    pub fn sample(&self, n: usize, seed: u64) -> Vec<Params> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let draw = |d: &Distribution, rng: &mut rand_chacha::ChaCha8Rng| match d {
                    Distribution::Fixed(v) => v.clone(),
                    Distribution::Choice(values) => {
                        values[rng.random_range(0..values.len())].clone()
                    }
                    // Rounding may step past a bound that has more digits than it keeps.
                    Distribution::Uniform(lo, hi) => Value::Float(
                        significant(lo + (hi - lo) * rng.random::<f64>()).clamp(*lo, *hi),
                    ),
                    Distribution::LogUniform(lo, hi) => {
                        let (a, b) = (lo.ln(), hi.ln());
                        let x = (a + (b - a) * rng.random::<f64>()).exp();
                        Value::Float(significant(x).clamp(*lo, *hi))
                    }
                    Distribution::IntUniform(lo, hi) => Value::Int(rng.random_range(*lo..=*hi)),
                };
                (self.params.iter())
                    .map(|(k, d)| (k.clone(), draw(d, &mut rng)))
                    .collect()
            })
            .collect()
    }
}

/// `x` rounded to four significant digits.
fn significant(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    let rounded = (x * scale).round() / scale;
    // Printed and parsed back, so that the value is the one its shortest text names.
    format!(
        "{rounded:.*}",
        (3 - x.abs().log10().floor() as i32).max(0) as usize
    )
    .parse()
    .unwrap_or(rounded)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn scalar(value: &toml::Value) -> Result<Value, String> {
    match value {
        toml::Value::Boolean(b) => Ok(Value::Bool(*b)),
        toml::Value::Integer(i) => Ok(Value::Int(*i)),
        toml::Value::Float(x) if x.is_finite() => Ok(Value::Float(*x)),
        toml::Value::String(s) => Ok(Value::Str(s.clone())),
        other => Err(format!(
            "expected a number, a string or true/false, found {}",
            other.type_str()
        )),
    }
}

fn bounds(value: &toml::Value) -> Result<(f64, f64), String> {
    let pair = value
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or("expected two bounds, [low, high]")?;
    let number = |v: &toml::Value| {
        v.as_float()
            .or_else(|| v.as_integer().map(|i| i as f64))
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("bound {v} is not a number"))
    };
    let (lo, hi) = (number(&pair[0])?, number(&pair[1])?);
    if lo >= hi {
        return Err(format!("bounds [{lo}, {hi}] are not increasing"));
    }
    Ok((lo, hi))
}

fn distribution(value: &toml::Value) -> Result<Distribution, String> {
    let Some(table) = value.as_table() else {
        return scalar(value).map(Distribution::Fixed);
    };
    const KINDS: &str = "choice, uniform, log_uniform or int_uniform";
    let mut entries = table.iter();
    let (Some((kind, arg)), None) = (entries.next(), entries.next()) else {
        return Err(format!(
            "expected one of {KINDS}, e.g. {{ choice = [32, 64] }}"
        ));
    };
    match kind.as_str() {
        "choice" => {
            let values = arg.as_array().ok_or("choice takes a list, e.g. [32, 64]")?;
            if values.is_empty() {
                return Err("the choice list is empty".into());
            }
            let values = values.iter().map(scalar).collect::<Result<Vec<_>, _>>()?;
            Ok(Distribution::Choice(values))
        }
        "uniform" => bounds(arg).map(|(lo, hi)| Distribution::Uniform(lo, hi)),
        "log_uniform" => {
            let (lo, hi) = bounds(arg)?;
            if lo <= 0.0 {
                return Err(format!(
                    "log_uniform bounds must be positive, got [{lo}, {hi}]"
                ));
            }
            Ok(Distribution::LogUniform(lo, hi))
        }
        "int_uniform" => {
            let (lo, hi) = bounds(arg)?;
            if lo.fract() != 0.0 || hi.fract() != 0.0 {
                return Err(format!(
                    "int_uniform bounds must be whole numbers, got [{lo}, {hi}]"
                ));
            }
            Ok(Distribution::IntUniform(lo as i64, hi as i64))
        }
        other => Err(format!("unknown distribution '{other}'; expected {KINDS}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &[
        "lr",
        "batch_size",
        "arch",
        "dropout",
        "optimizer",
        "nesterov",
    ];

    #[test]
    fn parses_every_kind_and_names_the_key_of_an_error() {
        let space = Space::parse(
            "optimizer = 'adam'\nlr = { log_uniform = [1e-4, 1e-2] }\n\
             batch_size = { choice = [32, 64] }\ndropout = { uniform = [0, 0.5] }\n\
             nesterov = false\n",
            KNOWN,
        )
        .unwrap();
        assert_eq!(space.params["lr"], Distribution::LogUniform(1e-4, 1e-2));
        assert_eq!(space.params["dropout"], Distribution::Uniform(0.0, 0.5));
        assert_eq!(
            space.params["nesterov"],
            Distribution::Fixed(Value::Bool(false))
        );
        let bad = |text: &str| Space::parse(text, KNOWN).unwrap_err();
        assert!(bad("lrr = 1").starts_with("unknown key 'lrr'; known keys: arch, batch_size"));
        assert_eq!(
            bad("batch_size = { choice = [] }"),
            "batch_size: the choice list is empty"
        );
        assert!(bad("lr = { log_uniform = [1e-2, 1e-4] }").contains("not increasing"));
        assert!(bad("lr = { log_uniform = [0, 1e-4] }").contains("must be positive"));
        assert!(bad("lr = { normal = [0, 1] }").contains("unknown distribution 'normal'"));
        assert!(bad("lr = [1, 2]").starts_with("lr: expected a number"));
        assert!(bad("lr = \n").starts_with("line 1"));
    }

    #[test]
    fn a_grid_is_the_product_of_its_choices_in_a_fixed_order() {
        let space = Space::parse(
            "batch_size = { choice = [32, 64, 128] }\narch = { choice = ['a', 'b'] }\nlr = 0.01",
            KNOWN,
        )
        .unwrap();
        let grid = space.grid().unwrap();
        assert_eq!(grid.len(), 6);
        assert_eq!(space.grid_size(), 6);
        assert_eq!(grid[0]["arch"], Value::Str("a".into()));
        assert_eq!(grid[0]["batch_size"], Value::Int(32));
        assert_eq!(grid[1]["batch_size"], Value::Int(64));
        assert_eq!(grid[3]["arch"], Value::Str("b".into()));
        assert!(grid.iter().all(|t| t["lr"] == Value::Float(0.01)));
        let ranged = Space::parse("lr = { uniform = [0, 1] }", KNOWN).unwrap();
        assert!(ranged.grid().unwrap_err().starts_with("lr: a grid needs"));
    }

    #[test]
    fn samples_stay_in_range_and_repeat_with_the_seed() {
        let space = Space::parse(
            "lr = { log_uniform = [1e-4, 1e-2] }\nbatch_size = { int_uniform = [1, 3] }",
            KNOWN,
        )
        .unwrap();
        let a = space.sample(200, 7);
        assert_eq!(a, space.sample(200, 7));
        assert_ne!(a, space.sample(200, 8));
        for t in &a {
            let lr = t["lr"].as_f64().unwrap();
            assert!((1e-4..=1e-2).contains(&lr), "{lr}");
            assert_eq!(lr, significant(lr), "four significant digits: {lr}");
            assert!(matches!(t["batch_size"], Value::Int(1..=3)));
        }
        // Bounds with more digits than a draw keeps still bound it.
        let odd = Space::parse("lr = { uniform = [0.0123449, 0.0123461] }", KNOWN).unwrap();
        for t in odd.sample(500, 1) {
            let lr = t["lr"].as_f64().unwrap();
            assert!((0.0123449..=0.0123461).contains(&lr), "{lr}");
        }
        // Both decades are drawn about equally often on a log scale.
        let low = a
            .iter()
            .filter(|t| t["lr"].as_f64().unwrap() < 1e-3)
            .count();
        assert!((70..130).contains(&low), "{low} of 200 below 1e-3");
    }

    #[test]
    fn significant_keeps_four_digits() {
        assert_eq!(significant(0.000123456), 0.0001235);
        assert_eq!(significant(123456.0), 123500.0);
        assert_eq!(significant(0.5), 0.5);
    }
}
