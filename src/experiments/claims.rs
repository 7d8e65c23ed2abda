//! An experiment's claims as checks on what its runs measured: each claim of the
//! paper is judged agrees, disagrees, or not measurable at this scale, with
//! the numbers it compared. A disagreement is a result, not an error.

use super::Scale;
use crate::report::read::Run;
use std::fmt::Write;

/// What a claim's check found, with the numbers it compared (or why it
/// could not compare them).
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Agrees(String),
    Disagrees(String),
    NotMeasurable(String),
}

impl Verdict {
    /// Agreement when `holds`, else disagreement; `numbers` say what was compared.
    pub fn of(holds: bool, numbers: String) -> Verdict {
        if holds {
            Verdict::Agrees(numbers)
        } else {
            Verdict::Disagrees(numbers)
        }
    }

    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Agrees(_) => "agrees",
            Verdict::Disagrees(_) => "disagrees",
            Verdict::NotMeasurable(_) => "not measurable at this scale",
        }
    }

    pub fn numbers(&self) -> &str {
        match self {
            Verdict::Agrees(n) | Verdict::Disagrees(n) | Verdict::NotMeasurable(n) => n,
        }
    }

    /// A claim made of parts: it disagrees when any part does, else it
    /// cannot be judged when any part cannot, else it agrees.
    pub fn all(parts: Vec<Verdict>) -> Verdict {
        let numbers = parts.iter().map(Verdict::numbers).collect::<Vec<_>>().join("; ");
        if parts.iter().any(|v| matches!(v, Verdict::Disagrees(_))) {
            Verdict::Disagrees(numbers)
        } else if parts.iter().any(|v| matches!(v, Verdict::NotMeasurable(_))) {
            Verdict::NotMeasurable(numbers)
        } else {
            Verdict::Agrees(numbers)
        }
    }
}

/// What an experiment's claims are judged on: its runs (the best of each
/// learning-rate sweep) and the scale they ran at.
pub struct Evidence<'a> {
    pub scale: Scale,
    pub runs: &'a [Run],
}

/// One claim of the paper and how to check it.
pub struct Claim {
    pub text: &'static str,
    pub check: fn(&Evidence) -> Verdict,
}

/// A claim with its verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub claim: String,
    pub verdict: Verdict,
}

pub fn judge(claims: &[Claim], evidence: &Evidence) -> Vec<Judged> {
    claims.iter().map(|c| Judged { claim: c.text.into(), verdict: (c.check)(evidence) }).collect()
}

/// For the terminal: one line per claim, its verdict first.
pub fn lines(judged: &[Judged]) -> String {
    let mut s = String::new();
    for j in judged {
        let _ = writeln!(s, "  [{}] {}\n      {}", j.verdict.word(), j.claim, j.verdict.numbers());
    }
    s
}

/// For report.md (and through it report.html): a table of the verdicts.
pub fn markdown(judged: &[Judged]) -> String {
    if judged.is_empty() {
        return String::new();
    }
    let cell = |t: &str| t.replace('|', "\\|").replace('\n', " ");
    let mut md = String::from("## The paper's claims against the measurements\n\n| claim | verdict | measured |\n| --- | --- | --- |\n");
    for j in judged {
        let _ = writeln!(md, "| {} | {} | {} |", cell(&j.claim), j.verdict.word(), cell(j.verdict.numbers()));
    }
    md.push('\n');
    md
}

/// Claims about a whole training schedule (test errors, final losses of
/// long runs) cannot be judged on the CI scale's few dozen steps.
pub fn at_paper_scale(ev: &Evidence, check: impl FnOnce() -> Verdict) -> Verdict {
    match ev.scale {
        Scale::Ci => Verdict::NotMeasurable("needs the paper's full schedule; the CI scale trains a few dozen steps".into()),
        Scale::Paper => check(),
    }
}

/// `value` in four significant figures, `-` when missing.
pub fn show(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.3e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_render_with_their_numbers() {
        let judged = vec![
            Judged { claim: "a | b".into(), verdict: Verdict::of(true, "1 < 2".into()) },
            Judged { claim: "c".into(), verdict: Verdict::of(false, "3 > 2".into()) },
            Judged { claim: "d".into(), verdict: Verdict::NotMeasurable("no runs".into()) },
        ];
        let md = markdown(&judged);
        assert!(md.contains("| a \\| b | agrees | 1 < 2 |"), "{md}");
        assert!(md.contains("| c | disagrees | 3 > 2 |") && md.contains("| d | not measurable at this scale | no runs |"), "{md}");
        assert!(lines(&judged).contains("[disagrees] c\n      3 > 2"));
        assert!(markdown(&[]).is_empty());
        let (yes, no, unknown) = (Verdict::Agrees("a".into()), Verdict::Disagrees("b".into()), Verdict::NotMeasurable("c".into()));
        assert_eq!(Verdict::all(vec![yes.clone(), yes.clone()]), Verdict::Agrees("a; a".into()));
        assert_eq!(Verdict::all(vec![yes.clone(), unknown.clone(), no]), Verdict::Disagrees("a; c; b".into()));
        assert_eq!(Verdict::all(vec![yes, unknown]), Verdict::NotMeasurable("a; c".into()));
    }
}
