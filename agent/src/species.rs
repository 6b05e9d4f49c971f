//! The species codes a station file names — `model.include`, `model.exclude`,
//! `model.thresholds` and `model.privacy_classes` — checked against the labels of the
//! model it runs. A code the model does not have would be silently inert: an include
//! that reports nothing, a threshold that sets nothing, and worst, a privacy class that
//! never withholds a clip. So the agent refuses to start, naming each such code, where it
//! is set, and the near-miss (a typo of a code, or a species' common or scientific name
//! written instead of its code).

use std::fmt;

use warble_config::StationConfig;
use warble_core::labels::LabelTable;

/// One code the model does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCode {
    /// The setting (`model.privacy_classes`, `model.thresholds.<code>`…).
    pub setting: String,
    /// The code as written.
    pub code: String,
    /// What it would have done.
    pub effect: &'static str,
    /// The model's code it most likely means, with its common name.
    pub suggestion: Option<String>,
}

/// Codes of a station file that the model does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct UnknownSpecies {
    /// The model (`id version, N classes`).
    pub model: String,
    /// Each unknown code.
    pub codes: Vec<UnknownCode>,
}

impl fmt::Display for UnknownSpecies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the station file names species the model ({}) does not have:",
            self.model
        )?;
        for c in &self.codes {
            write!(
                f,
                "\n  {}: `{}` is not one of its classes ({})",
                c.setting, c.code, c.effect
            )?;
            if let Some(s) = &c.suggestion {
                write!(f, "; did you mean {s}?")?;
            }
        }
        write!(
            f,
            "\n(`warble-export inspect --trusted KEY BUNDLE` lists the model's classes)"
        )
    }
}

/// Checks every code `st` names against `labels` (of the model called `model`).
///
/// # Errors
/// [`UnknownSpecies`] with every code the model lacks.
pub fn check(st: &StationConfig, labels: &LabelTable, model: &str) -> Result<(), UnknownSpecies> {
    let lists: [(&str, Vec<&str>, &'static str); 4] = [
        (
            "model.privacy_classes",
            st.privacy_classes.iter().map(String::as_str).collect(),
            "no clip would ever be withheld for it",
        ),
        (
            "model.include",
            st.include.iter().map(String::as_str).collect(),
            "it would never be reported",
        ),
        (
            "model.exclude",
            st.exclude.iter().map(String::as_str).collect(),
            "it would exclude nothing",
        ),
        (
            "model.thresholds",
            st.thresholds.keys().map(String::as_str).collect(),
            "its threshold would apply to nothing",
        ),
    ];
    let known = |code: &str| labels.iter().any(|l| l.code.as_str() == code);
    let mut codes = Vec::new();
    for (setting, list, effect) in lists {
        for code in list.into_iter().filter(|c| !known(c)) {
            let setting = if setting == "model.thresholds" {
                format!("{setting}.{code}")
            } else {
                setting.to_owned()
            };
            codes.push(UnknownCode {
                setting,
                code: code.to_owned(),
                effect,
                suggestion: suggest(code, labels),
            });
        }
    }
    if codes.is_empty() {
        return Ok(());
    }
    Err(UnknownSpecies {
        model: model.to_owned(),
        codes,
    })
}

/// The model's code `written` most likely means: the code of a species whose common or
/// scientific name it is (any case), else a code within typo distance.
fn suggest(written: &str, labels: &LabelTable) -> Option<String> {
    let named = |l: &&warble_core::labels::Label| {
        l.common.eq_ignore_ascii_case(written) || l.scientific.eq_ignore_ascii_case(written)
    };
    let label = labels.iter().find(named).or_else(|| {
        let near =
            warble_config::problem::near_miss(written, labels.iter().map(|l| l.code.as_str()))?;
        labels
            .iter()
            .find(|l| near.contains(&format!("`{}`", l.code)))
    })?;
    Some(format!("`{}` ({})", label.code, label.common))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warble_core::SpeciesCode;

    fn labels() -> LabelTable {
        LabelTable::new(
            [
                ("eurbla", "Turdus merula", "Eurasian Blackbird"),
                ("eurrob1", "Erithacus rubecula", "European Robin"),
                ("human", "Homo sapiens", "Human vocal"),
            ]
            .into_iter()
            .map(|(c, s, n)| (SpeciesCode::new(c).unwrap(), s.into(), n.into()))
            .collect(),
        )
        .unwrap()
    }

    fn station(model: &str) -> StationConfig {
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/demo/warble-demo.pub"
        );
        let text = format!(
            "[station]\nid = \"a\"\n[model]\nbundle = \"b.warble\"\ntrusted_keys = [\"{key}\"]\n{model}\n[storage]\ndata_dir = \"/d\"\n"
        );
        warble_config::load_str(std::path::Path::new("/s/station.toml"), &text).unwrap()
    }

    #[test]
    fn known_codes_pass() {
        let st = station("privacy_classes = [\"human\"]\ninclude = [\"eurbla\", \"eurrob1\"]");
        assert_eq!(check(&st, &labels(), "m"), Ok(()));
    }

    #[test]
    fn every_unknown_code_is_named_with_where_and_its_near_miss() {
        let st = station(
            "privacy_classes = [\"humans\"]\ninclude = [\"eurbla\"]\nexclude = [\"zzz\"]\n[model.thresholds]\neurob1 = 0.5",
        );
        let err = check(&st, &labels(), "demo 0.1.0, 3 classes").unwrap_err();
        let found: Vec<_> = err
            .codes
            .iter()
            .map(|c| (c.setting.as_str(), c.code.as_str(), c.suggestion.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "model.privacy_classes",
                    "humans",
                    Some("`human` (Human vocal)")
                ),
                ("model.exclude", "zzz", None),
                (
                    "model.thresholds.eurob1",
                    "eurob1",
                    Some("`eurrob1` (European Robin)")
                ),
            ]
        );
        let text = err.to_string();
        assert!(text.contains("no clip would ever be withheld"), "{text}");
        assert!(text.contains("demo 0.1.0, 3 classes"), "{text}");
    }
}
