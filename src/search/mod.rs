//! Hyperparameter search, independent of how a trial is trained: the space ([`space`]), the
//! trials each strategy runs, successive halving's rungs and promotions, and the journal of
//! finished trials that a resumed search replays.
//!
//! Strategies:
//! - `grid`: every combination of the choice lists, in a fixed order;
//! - `random`: trials drawn from the distributions by the seed (Bergstra & Bengio, 2012);
//! - `halving`: successive halving (the core of Hyperband): the drawn trials all train to the
//!   first rung's epochs; the best 1/eta of them continue from their own checkpoints to the
//!   next rung, and so on up to `max_epochs`.

pub mod plot;
pub mod space;

use serde::{Deserialize, Serialize};

pub use space::{Distribution, Params, Space, Value};

/// The epochs at which successive halving compares its trials: `max_epochs / eta^k`, rounded
/// down, from the smallest (at least 1) up to `max_epochs` itself, without repeats.
pub fn rungs(max_epochs: u64, eta: u64) -> Vec<u64> {
    let mut rungs = vec![max_epochs];
    let mut epochs = max_epochs;
    while eta > 1 && epochs / eta >= 1 {
        epochs /= eta;
        rungs.push(epochs);
    }
    rungs.reverse();
    rungs.dedup();
    rungs
}

/// Which metric ranks the trials, and which way is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ValAccuracy,
    ValLoss,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::ValAccuracy => "val_accuracy",
            Metric::ValLoss => "val_loss",
        }
    }

    /// Whether `a` is a better score than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Metric::ValAccuracy => a > b,
            Metric::ValLoss => a < b,
        }
    }
}

/// One trial trained to one rung (grid and random searches have one rung): a line of the
/// journal, `trials.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    pub trial: usize,
    pub rung: usize,
    /// Epochs trained in all when this rung ended.
    pub epochs: u64,
    pub params: Params,
    pub status: Status,
    pub val_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    /// Seconds this rung took (not counted in comparisons of results).
    pub seconds: f64,
    /// Why a failed trial failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
}

impl TrialResult {
    /// The ranking score: the metric at the rung's last epoch; none for a failed trial.
    pub fn score(&self, metric: Metric) -> Option<f64> {
        if self.status != Status::Ok {
            return None;
        }
        match metric {
            Metric::ValAccuracy => self.val_accuracy,
            Metric::ValLoss => self.val_loss,
        }
        .filter(|x| x.is_finite())
    }
}

/// The trials of one rung that go on to the next: the best `ceil(n / eta)` of those that
/// finished, ties broken by trial number so the choice is the same every time.
pub fn promoted(results: &[&TrialResult], metric: Metric, eta: u64) -> Vec<usize> {
    let mut scored: Vec<(f64, usize)> = results
        .iter()
        .filter_map(|r| r.score(metric).map(|s| (s, r.trial)))
        .collect();
    scored.sort_by(|a, b| {
        let order = a.0.partial_cmp(&b.0).expect("finite scores");
        let order = match metric {
            Metric::ValAccuracy => order.reverse(),
            Metric::ValLoss => order,
        };
        order.then(a.1.cmp(&b.1))
    });
    let keep = results.len().div_ceil(eta.max(1) as usize);
    let mut trials: Vec<usize> = scored.into_iter().take(keep).map(|(_, t)| t).collect();
    trials.sort_unstable();
    trials
}

/// The best result of all (the highest rung a trial reached counts for it), if any finished.
pub fn best(results: &[TrialResult], metric: Metric) -> Option<&TrialResult> {
    results
        .iter()
        .filter(|r| r.score(metric).is_some())
        .filter(|r| {
            !results
                .iter()
                .any(|o| o.trial == r.trial && o.rung > r.rung)
        })
        .fold(None, |best: Option<&TrialResult>, r| match best {
            Some(b) if !metric.better(r.score(metric).unwrap(), b.score(metric).unwrap()) => {
                Some(b)
            }
            _ => Some(r),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(trial: usize, rung: usize, acc: Option<f64>) -> TrialResult {
        TrialResult {
            trial,
            rung,
            epochs: 1,
            params: Params::new(),
            status: if acc.is_some() {
                Status::Ok
            } else {
                Status::Failed
            },
            val_accuracy: acc,
            val_loss: acc.map(|a| 1.0 - a),
            seconds: 0.0,
            error: None,
        }
    }

    #[test]
    fn rungs_divide_by_eta_down_to_one_epoch() {
        assert_eq!(rungs(9, 3), [1, 3, 9]);
        assert_eq!(rungs(10, 3), [1, 3, 10]);
        assert_eq!(rungs(5, 3), [1, 5]);
        assert_eq!(rungs(2, 3), [2]);
        assert_eq!(rungs(8, 2), [1, 2, 4, 8]);
    }

    #[test]
    fn the_best_third_is_promoted_and_failures_never_are() {
        let rs: Vec<TrialResult> = [0.5, 0.9, 0.7, 0.9, 0.1, 0.8]
            .iter()
            .enumerate()
            .map(|(i, &a)| result(i, 0, Some(a)))
            .chain([result(6, 0, None)])
            .collect();
        let refs: Vec<&TrialResult> = rs.iter().collect();
        // 7 trials, eta 3: three go on; the tie at 0.9 is broken by trial number.
        assert_eq!(promoted(&refs, Metric::ValAccuracy, 3), [1, 3, 5]);
        assert_eq!(promoted(&refs, Metric::ValLoss, 3), [1, 3, 5]);
        assert_eq!(promoted(&refs[4..5], Metric::ValAccuracy, 3), [4]);
        assert_eq!(
            promoted(&refs[6..], Metric::ValAccuracy, 3),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn the_best_counts_each_trial_at_its_highest_rung() {
        let rs = vec![
            result(0, 0, Some(0.95)),
            result(0, 1, Some(0.90)),
            result(1, 0, Some(0.93)),
            result(2, 0, None),
        ];
        let best = best(&rs, Metric::ValAccuracy).unwrap();
        assert_eq!((best.trial, best.rung), (1, 0));
        assert!(super::best(&rs[3..], Metric::ValAccuracy).is_none());
    }
}
