//! Classification metrics from a confusion matrix: accuracy, per-class precision, recall, F1 and
//! support, macro and support-weighted averages. A ratio with a zero denominator is 0 (as
//! scikit-learn reports it).

use serde::Serialize;

/// `counts[true][predicted]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfusionMatrix {
    pub counts: Vec<Vec<u64>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub class: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// Precision, recall and F1 averaged over classes.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl ConfusionMatrix {
    pub fn new(classes: usize) -> ConfusionMatrix {
        ConfusionMatrix {
            counts: vec![vec![0; classes]; classes],
        }
    }

    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct = (0..self.counts.len()).map(|c| self.counts[c][c]).sum();
        ratio(correct, self.total())
    }

    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.counts.len())
            .map(|c| {
                let tp = self.counts[c][c];
                let predicted: u64 = self.counts.iter().map(|row| row[c]).sum();
                let support: u64 = self.counts[c].iter().sum();
                let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    class: c,
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect()
    }

    /// Unweighted mean over classes.
    pub fn macro_average(&self) -> Averages {
        self.average(|_| 1.0)
    }

    /// Mean over classes weighted by support.
    pub fn weighted_average(&self) -> Averages {
        self.average(|m| m.support as f64)
    }

    fn average(&self, weight: impl Fn(&ClassMetrics) -> f64) -> Averages {
        let classes = self.per_class();
        let total: f64 = classes.iter().map(&weight).sum();
        if total == 0.0 {
            return Averages::default();
        }
        let mean = |f: fn(&ClassMetrics) -> f64| {
            classes.iter().map(|m| weight(m) * f(m)).sum::<f64>() / total
        };
        Averages {
            precision: mean(|m| m.precision),
            recall: mean(|m| m.recall),
            f1: mean(|m| m.f1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three classes, worked by hand:
    /// ```text
    ///            pred 0  pred 1  pred 2
    /// true 0        5       1       0
    /// true 1        2       3       1
    /// true 2        0       0       0
    /// ```
    fn example() -> ConfusionMatrix {
        ConfusionMatrix {
            counts: vec![vec![5, 1, 0], vec![2, 3, 1], vec![0, 0, 0]],
        }
    }

    #[test]
    fn per_class_metrics_match_hand_computation() {
        let m = example();
        assert_eq!(m.total(), 12);
        assert!((m.accuracy() - 8.0 / 12.0).abs() < 1e-12);
        let c = m.per_class();
        // class 0: tp 5, predicted 7, support 6
        assert!((c[0].precision - 5.0 / 7.0).abs() < 1e-12);
        assert!((c[0].recall - 5.0 / 6.0).abs() < 1e-12);
        assert!((c[0].f1 - 10.0 / 13.0).abs() < 1e-12); // 2PR/(P+R) = 2*5/(7+6)
                                                        // class 1: tp 3, predicted 4, support 6 -> F1 = 6/10
        assert!((c[1].f1 - 0.6).abs() < 1e-12);
        // class 2: never true, predicted once: all zero, no division by zero.
        assert_eq!(
            (c[2].precision, c[2].recall, c[2].f1, c[2].support),
            (0.0, 0.0, 0.0, 0)
        );
    }

    #[test]
    fn averages_match_hand_computation() {
        let m = example();
        let macro_f1 = (10.0 / 13.0 + 0.6 + 0.0) / 3.0;
        assert!((m.macro_average().f1 - macro_f1).abs() < 1e-12);
        let weighted_f1 = (6.0 * 10.0 / 13.0 + 6.0 * 0.6) / 12.0;
        assert!((m.weighted_average().f1 - weighted_f1).abs() < 1e-12);
        assert!((m.weighted_average().recall - m.accuracy()).abs() < 1e-12);
    }
}
