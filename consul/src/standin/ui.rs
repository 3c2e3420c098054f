//! The read-only `/ui` page: services, their instances and check status, server-rendered
//! HTML that refreshes itself every few seconds.

use std::fmt::Write;

use crate::standin::catalog::Catalog;
use crate::types::{CheckStatus, aggregate};

/// Seconds between automatic refreshes.
const REFRESH_SECONDS: u32 = 5;

/// Renders the page; `token` is carried into the refresh URL when ACLs are on.
pub fn render(catalog: &Catalog, token: Option<&str>) -> String {
    let node = catalog.node_info();
    let services = catalog.snapshot();
    let refresh = match token {
        Some(t) => format!("{REFRESH_SECONDS};url=/ui/?token={}", url_escape(t)),
        None => REFRESH_SECONDS.to_string(),
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{refresh}\">\
         <title>consul-dev: services</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}\
         .passing{{color:#1a7f37}}.warning{{color:#9a6700}}.critical{{color:#cf222e}}\
         pre{{margin:0;white-space:pre-wrap;max-width:60em}}</style></head><body>\n\
         <h1>consul-dev</h1>\n<p>Development stand-in for Consul; production uses real Consul. \
         Node <b>{}</b> ({}) in datacenter <b>{}</b>, index {}. Refreshes every {REFRESH_SECONDS}s.</p>\n",
        escape(&node.name),
        escape(&node.address),
        escape(&node.datacenter),
        catalog.index(),
    );
    if services.is_empty() {
        html.push_str("<p>No services registered.</p>\n");
    }
    let mut current: Option<&str> = None;
    for (service, checks) in &services {
        if current != Some(service.service.as_str()) {
            if current.is_some() {
                html.push_str("</table>\n");
            }
            current = Some(service.service.as_str());
            let instances: Vec<_> = services
                .iter()
                .filter(|(s, _)| s.service == service.service)
                .collect();
            let healthy = instances
                .iter()
                .filter(|(_, c)| aggregate(c.iter().map(|c| c.status)) == CheckStatus::Passing)
                .count();
            let _ = write!(
                html,
                "<h2>{}</h2>\n<p>{healthy} of {} instances passing</p>\n<table>\
                 <tr><th>Instance ID</th><th>Address</th><th>Tags</th><th>Status</th><th>Checks</th></tr>\n",
                escape(&service.service),
                instances.len(),
            );
        }
        let status = aggregate(checks.iter().map(|c| c.status));
        let address = if service.address.is_empty() {
            node.address.as_str()
        } else {
            service.address.as_str()
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}:{}</td><td>{}</td><td class=\"{status}\">{status}</td><td>",
            escape(&service.id),
            escape(address),
            service.port,
            escape(&service.tags.join(", ")),
        );
        if checks.is_empty() {
            html.push_str("(no checks)");
        }
        for check in checks {
            let _ = write!(
                html,
                "<div><b>{}</b> ({}, {}): <span class=\"{}\">{}</span><pre>{}</pre></div>",
                escape(&check.name),
                escape(&check.check_id),
                escape(&check.kind),
                check.status,
                check.status,
                escape(&check.output),
            );
        }
        html.push_str("</td></tr>\n");
    }
    if current.is_some() {
        html.push_str("</table>\n");
    }
    html.push_str("</body></html>\n");
    html
}

/// The page shown when ACLs are on and no valid token was given.
pub fn token_required() -> String {
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>consul-dev</title></head>\
     <body><h1>ACL not found</h1><p>This consul-dev requires a token: open <code>/ui/?token=YOUR_TOKEN</code>.</p>\
     </body></html>\n"
        .to_string()
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn url_escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    escape(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn url_escape_keeps_tokens_inert() {
        assert_eq!(url_escape("a b&c"), "a%20b%26c");
    }
}
