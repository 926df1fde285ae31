//! The demo's colours: ANSI styles on a terminal, plain text when stdout is not a
//! terminal or `NO_COLOR` is set (https://no-color.org). Also whether the view may clear
//! the screen between frames (a terminal only).

use std::io::IsTerminal;

#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub colour: bool,
    /// Clear the screen and redraw each frame (else frames follow one another).
    pub redraw: bool,
}

impl Style {
    pub fn detect() -> Style {
        let tty = std::io::stdout().is_terminal();
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            colour: tty && !no_colour,
            redraw: tty,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
    pub fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
    pub fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    pub fn yellow(&self, t: &str) -> String {
        self.paint("33", t)
    }
    pub fn red(&self, t: &str) -> String {
        self.paint("31", t)
    }
    pub fn cyan(&self, t: &str) -> String {
        self.paint("36", t)
    }

    /// A delivery state in its colour: active green, probing yellow, paused red.
    pub fn state(&self, state: &str, width: usize) -> String {
        let padded = format!("{state:<width$}");
        match state {
            "active" => self.green(&padded),
            "probing" => self.yellow(&padded),
            "paused" => self.red(&padded),
            _ => padded,
        }
    }
}

/// Splits `text` into lines of at most `width` characters, at spaces where it can (a word
/// longer than a line is cut); nothing of the text is dropped.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(10);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let room = if used == 0 {
                width
            } else {
                width.saturating_sub(used + 1)
            };
            if word.len() <= room {
                if used > 0 {
                    line.push(' ');
                }
                line.extend(word.iter());
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            let rest = word.split_off(width);
            lines.push(word.iter().collect());
            word = rest;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_every_word() {
        let text =
            "connect error: tcp connect error: Connection refused (os error 111) while sending";
        let lines = wrap(text, 20);
        assert!(lines.iter().all(|l| l.chars().count() <= 20), "{lines:?}");
        assert_eq!(lines.join(" "), text);
        let long = "x".repeat(45);
        assert_eq!(wrap(&long, 20).concat(), long);
        assert!(wrap("", 20).is_empty());
    }

    #[test]
    fn no_colour_is_plain_text() {
        let s = Style {
            colour: false,
            redraw: false,
        };
        assert_eq!(s.red("x"), "x");
        assert_eq!(s.state("paused", 8), "paused  ");
        let c = Style {
            colour: true,
            redraw: true,
        };
        assert_eq!(c.red("x"), "\x1b[31mx\x1b[0m");
    }
}
