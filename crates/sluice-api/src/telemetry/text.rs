//! The Prometheus text exposition format (version 0.0.4) for the series computed at scrape
//! time: each family once with its `# HELP` and `# TYPE`, label values escaped.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One family: its samples are added with [`Family::sample`] and written by [`Family::write`]
/// (a family without samples writes nothing).
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    lines: String,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            lines: String::new(),
        }
    }

    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.lines.push_str(self.name);
        if !labels.is_empty() {
            self.lines.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.lines.push(',');
                }
                self.lines.push_str(k);
                self.lines.push_str("=\"");
                escape_label_value(&mut self.lines, v);
                self.lines.push('"');
            }
            self.lines.push('}');
        }
        let _ = writeln!(self.lines, " {}", number(value));
    }

    pub fn write(&self, out: &mut String) {
        if self.lines.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind.as_str());
        out.push_str(&self.lines);
        out.push('\n');
    }
}

fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_has_help_type_and_escaped_labels() {
        let mut f = Family::new("sluice_x", Kind::Gauge, "An x.");
        f.sample(&[("integration", "a\"b\\c\nd"), ("state", "paused")], 1.0);
        f.sample(&[], 2.5);
        let mut out = String::new();
        f.write(&mut out);
        assert_eq!(
            out,
            "# HELP sluice_x An x.\n# TYPE sluice_x gauge\n\
             sluice_x{integration=\"a\\\"b\\\\c\\nd\",state=\"paused\"} 1\n\
             sluice_x 2.5\n\n"
        );
    }

    #[test]
    fn an_empty_family_writes_nothing() {
        let mut out = String::new();
        Family::new("sluice_y", Kind::Counter, "A y.").write(&mut out);
        assert!(out.is_empty());
    }
}
