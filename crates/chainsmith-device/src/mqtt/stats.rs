//! Latency figures: min, p50, p99, max over a run.

use serde::Serialize;

/// Latency over a run's samples, in milliseconds (percentiles by nearest rank).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct LatencyStats {
    /// Number of samples.
    pub count: usize,
    /// Fastest sample.
    pub min_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile: 99 % of samples were this fast or faster.
    pub p99_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
}

impl LatencyStats {
    /// Nearest-rank percentiles; None for no samples.
    pub(crate) fn from_ms(samples: &[f64]) -> Option<LatencyStats> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let r = (p / 100.0 * v.len() as f64).ceil() as usize;
            v[r.clamp(1, v.len()) - 1]
        };
        Some(LatencyStats {
            count: v.len(),
            min_ms: v[0],
            p50_ms: rank(50.0),
            p99_ms: rank(99.0),
            max_ms: v[v.len() - 1],
        })
    }
}

impl std::fmt::Display for LatencyStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            self.min_ms, self.p50_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = LatencyStats::from_ms(&v).unwrap();
        assert_eq!(
            (s.min_ms, s.p50_ms, s.p99_ms, s.max_ms),
            (1.0, 50.0, 99.0, 100.0)
        );
        let s = LatencyStats::from_ms(&[3.0]).unwrap();
        assert_eq!((s.p50_ms, s.p99_ms), (3.0, 3.0));
        assert!(LatencyStats::from_ms(&[]).is_none());
    }
}
