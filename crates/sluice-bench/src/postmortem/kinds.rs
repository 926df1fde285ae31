//! Who fails how: the kinds of destination and how they are spread over the integrations.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Healthy,
    Hang,
    Refuse,
    Status500,
    Slow,
    Flaky,
}

pub(super) const FAILURES: [Kind; 4] = [Kind::Hang, Kind::Refuse, Kind::Status500, Kind::Slow];

impl Kind {
    pub(super) fn label(self) -> &'static str {
        match self {
            Kind::Healthy => "healthy",
            Kind::Hang => "hang",
            Kind::Refuse => "refuse",
            Kind::Status500 => "500",
            Kind::Slow => "slow",
            Kind::Flaky => "flaky",
        }
    }
}

/// The failure kind of each integration in run 2: failing ones spread evenly over the
/// index range, kinds in turn; then flaky ones spread evenly over the healthy rest.
pub(super) fn layout(n: usize, failing_percent: u32, flaky_percent: u32) -> Vec<Kind> {
    let spread =
        |len: usize, pick: usize| (0..len).filter(move |&i| (i + 1) * pick / len > i * pick / len);
    let share = |pct: u32| (n * pct.min(100) as usize + 50) / 100;
    let mut kinds = vec![Kind::Healthy; n];
    for (k, i) in spread(n, share(failing_percent)).enumerate() {
        kinds[i] = FAILURES[k % 4];
    }
    let healthy: Vec<usize> = (0..n).filter(|&i| kinds[i] == Kind::Healthy).collect();
    let flaky = share(flaky_percent).min(healthy.len());
    for j in spread(healthy.len(), flaky) {
        kinds[healthy[j]] = Kind::Flaky;
    }
    kinds
}
