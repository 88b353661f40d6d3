//! How much of a User-Agent a click keeps (`--user-agent-detail`, docs/privacy.md): the whole
//! header (`full`, the seed's behaviour), only the browser family and the operating system
//! (`family`, e.g. `LINE / iOS`), or nothing (`none`).
//!
//! Applied to a record once it is decided (after the bot check and de-duplication, which read
//! the whole header), before it reaches the journal, so a reduced value is all that is ever
//! written anywhere. Families come from woothee, a maintained table shared by several
//! languages; the LINE in-app browser, most of this service's traffic, is named first.

use super::{Click, Record, Reject};

/// `--user-agent-detail`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UserAgentDetail {
    /// The whole header, up to 512 bytes (the seed's behaviour).
    #[default]
    Full,
    /// Browser family and operating system only, e.g. `LINE / iOS`.
    Family,
    /// No User-Agent at all.
    None,
}

impl UserAgentDetail {
    /// `record` with its User-Agent reduced to this detail.
    pub fn apply(self, record: Record) -> Record {
        if self == UserAgentDetail::Full {
            return record;
        }
        match record {
            Record::Click(c) => Record::Click(Click {
                user_agent: self.reduce(c.user_agent.as_deref()),
                ..c
            }),
            Record::Reject(r) => Record::Reject(Reject {
                user_agent: self.reduce(r.user_agent.as_deref()),
                ..r
            }),
        }
    }

    fn reduce(self, user_agent: Option<&str>) -> Option<String> {
        match self {
            UserAgentDetail::Full => user_agent.map(str::to_owned),
            UserAgentDetail::None => None,
            UserAgentDetail::Family => user_agent.map(family),
        }
    }
}

/// `BROWSER / OS`, each `UNKNOWN` when woothee does not know it.
fn family(user_agent: &str) -> String {
    let parsed = woothee::parser::Parser::new().parse(user_agent);
    let (browser, os) = parsed.map_or(("UNKNOWN", "UNKNOWN"), |r| (r.name, r.os));
    // LINE's in-app browser says " Line/13.x" after a Safari or Chrome token.
    let browser = if user_agent.contains(" Line/") {
        "LINE"
    } else {
        browser
    };
    format!("{browser} / {os}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_keep_browser_and_os_only() {
        let line = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 \
                    (KHTML, like Gecko) Mobile/15E148 Safari Line/14.3.0";
        assert_eq!(family(line), "LINE / iPhone");
        let chrome = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like \
                      Gecko) Chrome/126.0.0.0 Mobile Safari/537.36";
        assert_eq!(family(chrome), "Chrome / Android");
        assert_eq!(family("x"), "UNKNOWN / UNKNOWN");
        assert_eq!(UserAgentDetail::None.reduce(Some(chrome)), None);
        assert_eq!(
            UserAgentDetail::Full.reduce(Some(chrome)).as_deref(),
            Some(chrome)
        );
    }
}
