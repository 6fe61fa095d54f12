//! HTML pieces of the status page: escaping, the layout, times and the charts.

use std::fmt::Write as _;

/// `text` escaped for an HTML text node or a quoted attribute.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as a URL query value.
pub(crate) fn q(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The views, as the navigation lists them: path and name.
pub(crate) const VIEWS: [(&str, &str); 4] = [
    ("/", "Overview"),
    ("/ui/endpoints", "Endpoints"),
    ("/ui/deliveries", "Deliveries"),
    ("/ui/dead-letters", "Dead letters"),
];

/// What a page shows around its content.
pub(crate) struct Frame<'a> {
    /// The `<h1>` and the title.
    pub(crate) title: &'a str,
    /// The view of [`VIEWS`] this page belongs to.
    pub(crate) view: &'a str,
    /// A message from the action just taken, if any, and whether it reports a failure.
    pub(crate) notice: Option<(bool, &'a str)>,
    /// Whether a token is configured (then a sign-out button is shown).
    pub(crate) signed_in: bool,
    /// The generation of the configuration, shown in the header.
    pub(crate) generation: u64,
    /// Now, Unix ms (the "updated" line).
    pub(crate) now_ms: i64,
}

/// A whole page: the layout around `content`.
pub(crate) fn page(frame: &Frame<'_>, content: &str) -> String {
    let mut nav = String::new();
    for (path, name) in VIEWS {
        let current = if path == frame.view {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<li><a href=\"{path}\"{current}>{name}</a></li>");
    }
    let sign_out = if frame.signed_in {
        "<form method=\"post\" action=\"/logout\" class=\"signout\"><button type=\"submit\">Sign out</button></form>"
    } else {
        ""
    };
    let notice = frame
        .notice
        .map(|(failed, n)| {
            if failed {
                format!("<p class=\"warn\" role=\"alert\">{}</p>", esc(n))
            } else {
                format!("<p class=\"notice\">{}</p>", esc(n))
            }
        })
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\">\
<title>{title} · hookrelay</title>\
<link rel=\"stylesheet\" href=\"/ui/assets/style.css\">\
<script src=\"/ui/assets/live.js\" defer></script></head>\
<body><a class=\"skip\" href=\"#main\">Skip to content</a>\
<header><p class=\"brand\">hookrelay <span class=\"gen\" id=\"generation\" data-live>config generation {generation}</span></p>\
<nav aria-label=\"Views\"><ul>{nav}</ul></nav>{sign_out}</header>\
<main id=\"main\" tabindex=\"-1\"><h1>{title}</h1><div role=\"status\" aria-live=\"polite\" id=\"notice\">{notice}</div>{content}</main>\
<footer><p><span id=\"updated\" data-live>Updated {updated}.</span> <span id=\"live-control\"></span></p></footer>\
</body></html>\n",
        title = esc(frame.title),
        generation = frame.generation,
        updated = esc(&clock(frame.now_ms)),
    )
}

/// `ms` (Unix) as an RFC 3339 time in UTC, to the second.
pub(crate) fn clock(ms: i64) -> String {
    let Ok(ms) = u64::try_from(ms) else {
        return "before 1970".to_owned();
    };
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// How long before `now_ms` the time `ms` was, roughly: `12 s`, `4 min`, `3 h`, `2 d`.
pub(crate) fn ago(ms: i64, now_ms: i64) -> String {
    let s = now_ms.saturating_sub(ms).max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// A `<time>` element: the relative age, with the exact time as its `datetime` and title.
pub(crate) fn time_ago(ms: i64, now_ms: i64) -> String {
    let exact = clock(ms);
    format!(
        "<time datetime=\"{exact}\" title=\"{exact}\">{} ago</time>",
        ago(ms, now_ms)
    )
}

/// A state as a badge: its name, coloured by what it means.
pub(crate) fn badge(state: &str) -> String {
    let class = match state {
        "delivered" | "applied" | "up" | "active" => "ok",
        "dead" | "rejected" | "down" | "paused" | "failed" => "bad",
        "queued" | "in_flight" | "replayed" => "wait",
        _ => "plain",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(state))
}

/// Minutes a chart shows.
const MINUTES: usize = 60;

/// A bar chart of `(delivered, failed)` per minute, oldest first, as inline SVG with a
/// text equivalent.
pub(crate) fn chart(label: &str, steps: &[(u64, u64)]) -> String {
    const W: usize = 4;
    const H: u64 = 40;
    // Always an hour wide, the latest minute on the right: a process up for less than an
    // hour has empty minutes on the left.
    let pad = MINUTES.saturating_sub(steps.len());
    let steps = &steps[steps.len().saturating_sub(MINUTES)..];
    let bars = MINUTES;
    let max = steps.iter().map(|(d, f)| d + f).max().unwrap_or(0).max(1);
    let (delivered, failed) = steps.iter().fold((0, 0), |(d, f), (a, b)| (d + a, f + b));
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {H}\" width=\"{w}\" height=\"{H}\" role=\"img\" \
aria-label=\"{label}: {delivered} delivered, {failed} failed in the last hour, per minute\">",
        w = bars * W,
        label = esc(label),
    );
    let _ = write!(
        svg,
        "<rect class=\"base\" x=\"0\" y=\"{}\" width=\"{}\" height=\"1\"/>",
        H - 1,
        bars * W
    );
    for (i, (d, f)) in steps.iter().enumerate() {
        let x = (pad + i) * W;
        let dh = d * H / max;
        let fh = f * H / max;
        // A minute with any count shows at least a pixel of it.
        let dh = if *d > 0 { dh.max(1) } else { 0 };
        let fh = if *f > 0 { fh.max(1) } else { 0 };
        if dh > 0 {
            let _ = write!(
                svg,
                "<rect class=\"d\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{dh}\"/>",
                H - dh,
                W - 1
            );
        }
        if fh > 0 {
            let _ = write!(
                svg,
                "<rect class=\"f\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{fh}\"/>",
                H.saturating_sub(dh + fh),
                W - 1
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A hidden form field.
pub(crate) fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    )
}

/// A one-button form posting to `action`, then coming back to `back`.
pub(crate) fn button(action: &str, back: &str, label: &str, confirm: Option<&str>) -> String {
    let confirm = confirm
        .map(|c| format!(" data-confirm=\"{}\"", esc(c)))
        .unwrap_or_default();
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\"{confirm}>{}<button type=\"submit\">{}</button></form>",
        esc(action),
        hidden("back", back),
        esc(label)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(ago(0, 12_000), "12 s");
        assert_eq!(ago(0, 5 * 60_000), "5 min");
        assert_eq!(ago(0, 3 * 3_600_000), "3 h");
        assert_eq!(ago(0, 49 * 3_600_000), "2 d");
        assert_eq!(ago(10_000, 0), "0 s");
    }

    #[test]
    fn a_chart_says_its_totals_in_text() {
        let svg = chart("crm", &[(3, 0), (0, 1), (0, 0)]);
        assert!(svg.contains("crm: 3 delivered, 1 failed in the last hour"));
        assert_eq!(svg.matches("<rect class=\"d\"").count(), 1);
        assert_eq!(svg.matches("<rect class=\"f\"").count(), 1);
        // The last minute is on the right of an hour's width (here the one before it).
        assert!(svg.contains("viewBox=\"0 0 240 40\""), "{svg}");
        assert!(svg.contains("<rect class=\"f\" x=\"232\""), "{svg}");
        assert!(svg.contains("height=\"40\"/>"), "{svg}");
    }
}
