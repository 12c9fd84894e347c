//! Reading one INI document: values by section and key with defaults and minimums, and errors
//! that name the file, the line and the key.

use super::ConfigError;
use std::time::Duration;

/// A parsed file and where it came from, for reading values and locating errors.
pub(crate) struct Doc<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a str,
    pub(super) ini: &'a ini::Ini,
}

impl Doc<'_> {
    /// The sections named `<prefix><name>`, as (name, section).
    pub(crate) fn sections_with_prefix(&self, prefix: &str) -> Vec<(&str, &str)> {
        let sections = self.ini.sections().flatten();
        sections
            .filter_map(|s| s.strip_prefix(prefix).map(|name| (name, s)))
            .collect()
    }

    pub(crate) fn has_section(&self, section: &str) -> bool {
        self.ini.section(Some(section)).is_some()
    }

    pub(crate) fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.ini
            .section(Some(section))
            .and_then(|p| p.get(key))
            .map(str::trim)
    }

    pub(crate) fn number<T>(
        &self,
        section: &str,
        key: &str,
        default: T,
        min: T,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + Copy + PartialOrd + std::fmt::Display,
    {
        let Some(raw) = self.get(section, key) else {
            return Ok(default);
        };
        match raw.parse::<T>() {
            Ok(v) if v >= min => Ok(v),
            Ok(_) => Err(self.error(section, key, format!("must be at least {min}"))),
            Err(_) => Err(self.error(section, key, format!("{raw:?} is not a whole number"))),
        }
    }

    pub(crate) fn millis(
        &self,
        section: &str,
        key: &str,
        default: u64,
        min: u64,
    ) -> Result<Duration, ConfigError> {
        self.number(section, key, default, min)
            .map(Duration::from_millis)
    }

    /// A retention in units of `unit` (`*_ms` or `*_days` keys), `default` when absent; 0 is
    /// forever (`None`); more than a century is refused (no timestamp reaches back so far).
    pub(crate) fn keep_for(
        &self,
        section: &str,
        key: &str,
        default: u64,
        unit: Duration,
    ) -> Result<Option<Duration>, ConfigError> {
        const CENTURY: Duration = Duration::from_secs(100 * 366 * 86_400);
        let n: u64 = self.number(section, key, default, 0)?;
        let keep = unit.saturating_mul(n.try_into().unwrap_or(u32::MAX));
        match n {
            0 => Ok(None),
            _ if keep > CENTURY => Err(self.error(section, key, "is over 100 years".into())),
            _ => Ok(Some(keep)),
        }
    }

    /// Checks that one whole-number key (its default if absent) is at most another.
    pub(super) fn check_order(
        &self,
        low: (&str, &str, u64),
        high: (&str, &str, u64),
    ) -> Result<(), ConfigError> {
        let l = self.number(low.0, low.1, low.2, 0)?;
        let h = self.number(high.0, high.1, high.2, 0)?;
        if l > h {
            let message = format!("{l} is more than [{}] {} ({h})", high.0, high.1);
            return Err(self.error(low.0, low.1, message));
        }
        Ok(())
    }

    /// A `true` or `false` key, `default` when absent.
    pub(super) fn boolean(
        &self,
        section: &str,
        key: &str,
        default: bool,
    ) -> Result<bool, ConfigError> {
        match self.get(section, key) {
            None => Ok(default),
            Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(self.error(section, key, format!("{other:?} is not true or false"))),
        }
    }

    pub(crate) fn error(&self, section: &str, key: &str, message: String) -> ConfigError {
        let line = locate(self.text, section, key);
        let key = match (section, key) {
            ("", key) => key.to_owned(),
            (section, "") => format!("[{section}]"),
            (section, key) => format!("[{section}] {key}"),
        };
        ConfigError {
            file: self.file.into(),
            line,
            key,
            message,
        }
    }
}

/// The 1-based line of `key` in `[section]` (of the section header when `key` is empty).
fn locate(text: &str, section: &str, key: &str) -> usize {
    let mut current = "";
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim();
            if current == section && key.is_empty() {
                return i + 1;
            }
        } else if current == section && !key.is_empty() {
            let name = line.split(['=', ':']).next().unwrap_or("").trim();
            if name == key {
                return i + 1;
            }
        }
    }
    0
}
