//! Which requests are bots: link-preview fetchers, crawlers and plain HTTP clients (docs/link-contract.md,
//! §4a). They get the redirect, but a preview LINE fetches when a message is sent is not a
//! member clicking, so they are counted (`track_bot_hits_total{kind}`) and not recorded.
//!
//! The list is data, in this one table, matched case-insensitively in one pass
//! (aho-corasick) whatever its length. Each pattern is specific enough not to hit a browser:
//! LINE's in-app browser (`... Line/13.20.0`, LIFF) and Facebook's (`FBAN/FBIOS`) must stay
//! clicks, so there is no bare `line`, `facebook` or `bot` pattern (`bot` would catch phone
//! models such as CUBOT). A request without a User-Agent is a click: privacy tools strip it.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// (substring of the User-Agent, lower case; `kind` label). When several match, the earlier
/// row wins: LINE's preview fetcher also says `facebookexternalhit`.
const BOTS: &[(&str, &str)] = &[
    // LINE: the preview fetcher and the crawler. Not `line/` (the in-app browser).
    ("line-poker", "line"),
    ("linespider", "line"),
    ("facebookexternalhit", "facebook"),
    ("facebookcatalog", "facebook"),
    ("meta-externalagent", "facebook"),
    ("slackbot", "slack"),
    ("slack-imgproxy", "slack"),
    // Before Twitter: Telegram's says "TelegramBot (like TwitterBot)".
    ("telegrambot", "telegram"),
    ("twitterbot", "twitter"),
    ("discordbot", "discord"),
    // WhatsApp has no in-app browser: its User-Agent is always the preview fetcher.
    ("whatsapp/", "whatsapp"),
    ("googlebot", "google"),
    ("google-inspectiontool", "google"),
    ("googleother", "google"),
    ("adsbot-google", "google"),
    ("mediapartners-google", "google"),
    ("feedfetcher-google", "google"),
    ("google-pagerenderer", "google"),
    ("bingbot", "bing"),
    ("bingpreview", "bing"),
    ("msnbot", "bing"),
    ("applebot", "apple"),
    ("linkedinbot", "linkedin"),
    ("pinterestbot", "pinterest"),
    ("skypeuripreview", "microsoft"),
    ("microsoftpreview", "microsoft"),
    ("redditbot", "reddit"),
    ("embedly", "preview_service"),
    ("iframely", "preview_service"),
    ("vkshare", "preview_service"),
    ("kakaotalk-scrap", "preview_service"),
    ("yandexbot", "crawler"),
    ("baiduspider", "crawler"),
    ("duckduckbot", "crawler"),
    ("petalbot", "crawler"),
    ("bytespider", "crawler"),
    ("ahrefsbot", "crawler"),
    ("semrushbot", "crawler"),
    ("mj12bot", "crawler"),
    ("dotbot", "crawler"),
    ("gptbot", "crawler"),
    ("chatgpt-user", "crawler"),
    ("claudebot", "crawler"),
    ("perplexitybot", "crawler"),
    ("ccbot", "crawler"),
    ("amazonbot", "crawler"),
    ("archive.org_bot", "crawler"),
    ("ia_archiver", "crawler"),
    ("uptimerobot", "monitor"),
    ("pingdom", "monitor"),
    ("statuscake", "monitor"),
    ("headlesschrome", "headless_browser"),
    ("phantomjs", "headless_browser"),
    ("curl/", "http_client"),
    ("wget/", "http_client"),
    ("python-requests", "http_client"),
    ("python-urllib", "http_client"),
    ("python-httpx", "http_client"),
    ("aiohttp", "http_client"),
    ("go-http-client", "http_client"),
    ("java/", "http_client"),
    ("okhttp", "http_client"),
    ("apache-httpclient", "http_client"),
    ("libwww-perl", "http_client"),
    ("node-fetch", "http_client"),
    ("undici", "http_client"),
    ("axios/", "http_client"),
    ("got (https://github.com/sindresorhus/got)", "http_client"),
    ("php/", "http_client"),
    ("guzzlehttp", "http_client"),
    ("postmanruntime", "http_client"),
    ("insomnia", "http_client"),
    ("httpie", "http_client"),
    ("reqwest", "http_client"),
    ("hyper/", "http_client"),
    ("dart:io", "http_client"),
    ("scrapy", "http_client"),
    ("powershell", "http_client"),
    ("wrk", "http_client"),
    ("oha/", "http_client"),
    ("apachebench", "http_client"),
    ("k6/", "http_client"),
];

static MATCHER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .build(BOTS.iter().map(|(pattern, _)| pattern))
        // Building fails only past aho-corasick's size limits (hundreds of MB of patterns);
        // this table is fixed at compile time and tested, so it cannot fail at run time.
        .expect("the bot table is a few hundred bytes of literals")
});

/// The bot `kind` of a User-Agent, or `None` for a browser (or no User-Agent at all).
pub fn bot_kind(user_agent: Option<&str>) -> Option<&'static str> {
    let first_row = MATCHER
        .find_overlapping_iter(user_agent?)
        .map(|m| m.pattern().as_usize())
        .min()?;
    Some(BOTS[first_row].1)
}

/// Every `kind` label, for registering the metric at start-up.
pub fn kinds() -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = BOTS.iter().map(|(_, kind)| *kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real User-Agent strings that must stay clicks.
    const BROWSERS: &[&str] = &[
        // LINE's in-app browser, iOS and Android, and a LIFF app.
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/14.9.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Line/13.20.0 LIFF",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36 Line/13.21.1/IAB",
        "Mozilla/5.0 (Linux; Android 12; Pixel 6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Mobile Safari/537.36 Line/13.17.0 LIFF",
        // Ordinary mobile and desktop browsers.
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        // In-app browsers of other apps: people, not previews.
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/458.0.0.36.108;FBBV/590335950;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.4;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
        "Mozilla/5.0 (Linux; Android 14; SM-G991B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/123.0.6312.118 Mobile Safari/537.36 Instagram 327.0.0.45.80 Android",
        "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; KakaoTalk 10.4.5) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 KAKAOTALK 10.4.5",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_TW",
    ];

    /// Real bot User-Agent strings, with the kind each must get.
    const BOTS_SEEN: &[(&str, &str)] = &[
        ("facebookexternalhit/1.1;line-poker/1.0", "line"),
        (
            "Mozilla/5.0 (compatible; Linespider/1.1; +https://lin.ee/4dwXkTH)",
            "line",
        ),
        (
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "facebook",
        ),
        (
            "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
            "facebook",
        ),
        (
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "slack",
        ),
        ("Slack-ImgProxy (+https://api.slack.com/robots)", "slack"),
        ("Twitterbot/1.0", "twitter"),
        (
            "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
            "discord",
        ),
        ("TelegramBot (like TwitterBot)", "telegram"),
        ("WhatsApp/2.23.20.0 A", "whatsapp"),
        (
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.118 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "google",
        ),
        (
            "Mozilla/5.0 (compatible; Google-InspectionTool/1.0;)",
            "google",
        ),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
            "bing",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
            "apple",
        ),
        (
            "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
            "linkedin",
        ),
        (
            "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com",
            "microsoft",
        ),
        (
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
            "crawler",
        ),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
            "crawler",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.6367.60 Safari/537.36",
            "headless_browser",
        ),
        ("curl/8.5.0", "http_client"),
        ("Wget/1.21.4", "http_client"),
        ("python-requests/2.31.0", "http_client"),
        ("Python-urllib/3.11", "http_client"),
        ("Go-http-client/1.1", "http_client"),
        ("okhttp/4.12.0", "http_client"),
        ("Java/17.0.2", "http_client"),
        ("axios/1.6.8", "http_client"),
        (
            "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
            "http_client",
        ),
        ("PostmanRuntime/7.37.3", "http_client"),
    ];

    #[test]
    fn browsers_and_in_app_browsers_are_clicks() {
        for ua in BROWSERS {
            assert_eq!(bot_kind(Some(ua)), None, "{ua}");
        }
        assert_eq!(bot_kind(None), None, "no User-Agent is a click");
        assert_eq!(bot_kind(Some("")), None);
    }

    #[test]
    fn preview_fetchers_crawlers_and_http_clients_are_bots() {
        for (ua, kind) in BOTS_SEEN {
            assert_eq!(bot_kind(Some(ua)), Some(*kind), "{ua}");
        }
        assert_eq!(
            bot_kind(Some("CURL/8.0")),
            Some("http_client"),
            "case-insensitive"
        );
    }

    #[test]
    fn the_table_is_lower_case_and_has_no_duplicates() {
        let mut seen = std::collections::BTreeSet::new();
        for (pattern, _) in BOTS {
            assert_eq!(*pattern, pattern.to_ascii_lowercase());
            assert!(seen.insert(*pattern), "{pattern} twice");
        }
    }
}
