//! The dashboard's page shell: navigation, inline CSS, and the few lines of script that keep a
//! page's live part current by server-sent events (`/events<path>?<query>` sends the same page's
//! live part again whenever it changes). Forms sit outside the live part, so an update never
//! wipes what the user is typing. Every text from the stack is escaped ([`escape`]).

use std::fmt::Write;

/// The pages, in navigation order: (path, title).
pub const PAGES: [(&str, &str); 6] = [
    ("/", "Stack"),
    ("/resources", "Resources"),
    ("/data", "Data"),
    ("/mocks", "Mocks"),
    ("/queues", "Queues"),
    ("/faults", "Faults"),
];

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}\
header{background:#1d2330;color:#fff;padding:8px 20px;display:flex;gap:18px;align-items:center}\
header b{font-size:16px}header a{color:#c9d1e0;text-decoration:none}header a.on{color:#fff;border-bottom:2px solid #7fb0ff}\
main{padding:12px 20px}table{border-collapse:collapse;background:#fff;margin:8px 0 18px}\
th,td{border:1px solid #d8dce3;padding:4px 10px;text-align:left;vertical-align:top}th{background:#eef0f4}\
.ok{color:#17753a}.bad{color:#b3261e}.wait{color:#8a5a00}code,pre{font-size:12px}pre{margin:0;white-space:pre-wrap}\
.ready{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff}\
.ready.ok{background:#17753a}.ready.bad{background:#b3261e}\
form{background:#fff;border:1px solid #d8dce3;padding:8px 12px;margin:8px 0 16px;display:inline-block}\
textarea{width:46em;height:9em;font:12px monospace}input[type=text]{width:22em}\
.flash{background:#fff3cd;border:1px solid #e0c36a;padding:6px 10px;margin:8px 0}";

const SCRIPT: &str = "var live=document.getElementById('live');if(live&&window.EventSource){\
new EventSource('/events'+location.pathname+location.search).addEventListener('live',\
function(e){live.innerHTML=e.data;});}";

/// One page: its live part (re-sent by events) and its controls (forms, sent once).
#[derive(Debug, Default)]
pub struct Page {
    /// The navigation entry it belongs to (a path of [`PAGES`]).
    pub section: &'static str,
    pub title: String,
    pub live: String,
    pub controls: String,
}

/// The whole HTML document of a page; `flash` is a one-time message (a form's result).
pub fn document(project: &str, page: &Page, flash: Option<&str>) -> String {
    let mut nav = String::new();
    for (path, title) in PAGES {
        let class = if path == page.section {
            " class=\"on\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{path}\"{class}>{title}</a>");
    }
    let flash = flash
        .map(|text| format!("<div class=\"flash\" id=\"flash\">{}</div>", escape(text)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>{title} · inframock · {project}</title><style>{STYLE}</style></head><body>\
<header><b>inframock</b><span>{project}</span>{nav}</header><main>{flash}\
<div id=\"live\">{live}</div>{controls}</main><script>{SCRIPT}</script></body></html>\n",
        title = escape(&page.title),
        project = escape(project),
        live = one_line(&page.live),
        controls = page.controls,
    )
}

/// A live part as one line (it travels as one `data:` line of an event).
pub fn one_line(html: &str) -> String {
    html.replace(['\n', '\r'], " ")
}

/// Text made safe inside HTML elements and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A query-string value, percent-encoded (for links).
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A table: header cells, then rows of already-escaped HTML cells.
pub fn html_table(id: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut html = format!("<table id=\"{id}\"><tr>");
    for cell in header {
        let _ = write!(html, "<th>{cell}</th>");
    }
    html.push_str("</tr>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html
}

/// Text as it is, escaped, in a `<pre>`: its line breaks are written as `&#10;`, so they
/// survive a live part's trip as one line.
pub fn pre(text: &str) -> String {
    format!("<pre>{}</pre>", escape(text).replace('\n', "&#10;"))
}

/// A JSON value, pretty, in a `<pre>`.
pub fn json_block(value: &serde_json::Value) -> String {
    pre(&serde_json::to_string_pretty(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_stack_is_escaped_and_the_live_part_is_one_line() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let page = Page {
            section: "/",
            title: "<t>".into(),
            live: "a\nb".into(),
            controls: String::new(),
        };
        let html = document("<p>", &page, Some("<done>"));
        assert!(html.contains("<div id=\"live\">a b</div>"), "{html}");
        assert!(
            html.contains("&lt;t&gt;") && html.contains("&lt;done&gt;"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"/\" class=\"on\">Stack</a>"),
            "{html}"
        );
        assert_eq!(encode("a b&c/é"), "a+b%26c%2F%C3%A9");
        assert_eq!(pre("a\n<b>"), "<pre>a&#10;&lt;b&gt;</pre>");
    }
}
