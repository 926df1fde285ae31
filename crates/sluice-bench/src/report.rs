//! Printing figures: aligned tables and number formatting.

use std::time::Duration;

/// A table printed with aligned columns; the first row added with [`Table::header`] is
/// underlined.
#[derive(Debug, Default)]
pub struct Table {
    header: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    pub fn header<I: IntoIterator<Item = S>, S: Into<String>>(mut self, cols: I) -> Table {
        self.header = Some(cols.into_iter().map(Into::into).collect());
        self
    }

    /// A two-column row: label, value.
    pub fn row(mut self, label: impl Into<String>, value: impl Into<String>) -> Table {
        self.rows.push(vec![label.into(), value.into()]);
        self
    }

    pub fn cols<I: IntoIterator<Item = S>, S: Into<String>>(mut self, cols: I) -> Table {
        self.rows.push(cols.into_iter().map(Into::into).collect());
        self
    }

    pub fn print(&self) {
        let all = self.header.iter().chain(self.rows.iter());
        let n = all.clone().map(Vec::len).max().unwrap_or(0);
        let mut width = vec![0usize; n];
        for row in all {
            for (i, c) in row.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |row: &[String]| {
            let mut s = String::from("  ");
            for (i, c) in row.iter().enumerate() {
                let pad = width[i].saturating_sub(c.chars().count());
                if i == 0 {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else if self.header.is_none() {
                    // label: value tables read best left-aligned.
                    s.push_str("  ");
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else {
                    // Figures right-aligned.
                    s.push_str("  ");
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
            }
            println!("{}", s.trim_end());
        };
        if let Some(h) = &self.header {
            line(h);
            let total: usize = width.iter().sum::<usize>() + 2 * width.len().saturating_sub(1);
            println!("  {}", "-".repeat(total));
        }
        for r in &self.rows {
            line(r);
        }
    }
}

/// A section title.
pub fn title(t: &str) {
    println!();
    println!("{t}");
    println!("{}", "=".repeat(t.chars().count()));
}

/// `1234567.8` → `1,234,568`.
pub fn int(v: f64) -> String {
    let n = v.round() as i128;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub fn pct(v: f64) -> String {
    format!("{v:.0}%")
}

/// The `q`-quantile (0..=1) of sorted microsecond samples.
pub fn quantile(sorted_us: &[u32], q: f64) -> Duration {
    if sorted_us.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * q).round() as usize;
    Duration::from_micros(u64::from(sorted_us[i.min(sorted_us.len() - 1)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(int(0.0), "0");
        assert_eq!(int(999.0), "999");
        assert_eq!(int(1000.0), "1,000");
        assert_eq!(int(1_234_567.6), "1,234,568");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        let s = [1, 2, 3, 4, 100];
        assert_eq!(quantile(&s, 0.5), Duration::from_micros(3));
        assert_eq!(quantile(&s, 1.0), Duration::from_micros(100));
    }
}
