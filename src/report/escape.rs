//! Escaping of user-provided text for each output language.
//!
//! Every string that comes from a protocol, a requirements file, a manifest column or a model
//! answer is data, never markup: a subgroup value of `#sys.exit()` must print as those
//! characters, not run as Typst code, and `<script>` must not become an HTML element. The
//! report templates get these functions as minijinja filters, and the template environment
//! escapes every interpolated value that is not already marked safe, so forgetting a filter in
//! a (site) template cannot open a hole.

/// Escapes text for Typst *markup* (content between `[` and `]`, or the document body).
///
/// Typst treats a backslash followed by any non-space character as that character, literally,
/// so every ASCII punctuation character is escaped; letters, digits and non-ASCII text
/// (right-to-left scripts included) pass through. Line breaks become spaces (a blank line
/// would start a new paragraph, or break a table cell) and other control characters are
/// dropped.
pub fn typst_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    for c in s.chars() {
        match c {
            '\r' | '\n' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for the inside of a Typst string literal (`"..."`), without the quotes.
pub(crate) fn typst_str_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for Markdown (CommonMark with GitHub tables), inline or in a table cell.
///
/// Characters that start emphasis, code, links, HTML, math, tables or entities are
/// backslash-escaped wherever they are; characters that only matter at the start of a line
/// (`-`, `+`, `=`, `.` after digits, `>`) are escaped there. Numbers such as `0.911
/// (0.881-0.934)` therefore stay readable in the raw file. Line breaks become spaces so a
/// value can never end a table row.
pub fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    for c in s.chars() {
        match c {
            '\r' | '\n' | '\t' => out.push(' '),
            c if c.is_control() => {}
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' | '$' | '&' | '!'
            | '{' | '}' | '^' | '@' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    // Block markers only count at the start of a line and before a space (or alone):
    // `- x`, `+ x`, `= x`, `---`, `1. x`, `12) x`.
    let first = out.chars().next();
    if let Some(f @ ('-' | '+' | '=')) = first {
        let rest = &out[1..];
        if rest.is_empty() || rest.starts_with(' ') || rest.chars().all(|c| c == f) {
            out.insert(0, '\\');
        }
    } else {
        let digits = out.chars().take_while(|c| c.is_ascii_digit()).count();
        let rest = &out[digits..];
        if digits > 0
            && (rest.starts_with(". ") || rest.starts_with(") ") || rest == "." || rest == ")")
        {
            out.insert(digits, '\\');
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values (what minijinja's HTML
/// auto-escaping does; used for SVG text the templates embed raw).
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Splits text into plain and code segments at backtick pairs (`` `medgate lock` ``), as the
/// diagnostics write commands and names. An unpaired backtick stays plain text; an empty
/// pair (` `` `) is plain text too.
fn code_spans(s: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('`') {
        let after = &rest[open + 1..];
        match after.find('`') {
            Some(close) if close > 0 => {
                if open > 0 {
                    out.push((false, &rest[..open]));
                }
                out.push((true, &after[..close]));
                rest = &after[close + 1..];
            }
            _ => break,
        }
    }
    if !rest.is_empty() {
        out.push((false, rest));
    }
    out
}

/// HTML with each backtick span as `<code>`, everything escaped.
pub(crate) fn html_code_spans(s: &str) -> String {
    code_spans(s)
        .into_iter()
        .map(|(code, t)| {
            if code {
                format!("<code>{}</code>", html_escape(t))
            } else {
                html_escape(t)
            }
        })
        .collect()
}

/// Typst markup with each backtick span as `#raw("...")`, everything escaped.
pub(crate) fn typst_code_spans(s: &str) -> String {
    code_spans(s)
        .into_iter()
        .map(|(code, t)| {
            if code {
                format!("#raw(\"{}\")", typst_str_escape(t))
            } else {
                typst_escape(t)
            }
        })
        .collect()
}

/// Markdown with each backtick span kept as a code span (its content is literal in
/// CommonMark, so only line breaks are replaced); the rest escaped by [`md_escape`].
pub(crate) fn md_code_spans(s: &str) -> String {
    code_spans(s)
        .into_iter()
        .map(|(code, t)| {
            if code {
                let t: String = t
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                // A space-padded span keeps a `|` from ending a GitHub table cell.
                format!("`{}`", t.replace('|', "\\|"))
            } else {
                md_escape(t)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typst_escapes_code_markup_and_math() {
        assert_eq!(typst_escape("#sys.exit()"), r"\#sys\.exit\(\)");
        assert_eq!(typst_escape("]"), r"\]");
        assert_eq!(typst_escape("$x$"), r"\$x\$");
        assert_eq!(typst_escape("*bold* _it_"), r"\*bold\* \_it\_");
        assert_eq!(typst_escape(r"a\b"), r"a\\b");
        assert_eq!(typst_escape("<script>"), r"\<script\>");
        assert_eq!(typst_escape("// c"), r"\/\/ c");
        assert_eq!(typst_escape("@ref"), r"\@ref");
        assert_eq!(typst_escape("a\n\nb"), "a  b");
        // Right-to-left text and other non-ASCII text is untouched.
        assert_eq!(typst_escape("مرحبا שלום"), "مرحبا שלום");
        assert_eq!(typst_escape("F × 40–64"), "F × 40–64");
    }

    #[test]
    fn typst_string_literal_escape() {
        assert_eq!(
            typst_str_escape(r#"say "hi" \ now"#),
            r#"say \"hi\" \\ now"#
        );
        assert_eq!(typst_str_escape("a\nb"), "a b");
    }

    #[test]
    fn markdown_escape_keeps_numbers_readable() {
        assert_eq!(md_escape("0.911 (0.881-0.934)"), "0.911 (0.881-0.934)");
        assert_eq!(md_escape("*bold*"), r"\*bold\*");
        assert_eq!(md_escape("<script>"), r"\<script\>");
        assert_eq!(md_escape("a|b"), r"a\|b");
        assert_eq!(md_escape("$x$"), r"\$x\$");
        assert_eq!(md_escape("[l](u)"), r"\[l\](u)");
        assert_eq!(md_escape("# head"), r"\# head");
        assert_eq!(md_escape("- item"), r"\- item");
        assert_eq!(md_escape("1. item"), r"1\. item");
        assert_eq!(md_escape("12) item"), r"12\) item");
        assert_eq!(md_escape("a-b"), "a-b");
        assert_eq!(md_escape(r"a\b"), r"a\\b");
        assert_eq!(md_escape("&amp;"), r"\&amp;");
        assert_eq!(md_escape("x\ny"), "x y");
        assert_eq!(md_escape("---"), r"\---");
        assert_eq!(md_escape("@team"), r"\@team");
        assert_eq!(md_escape("-0.5"), "-0.5");
    }

    #[test]
    fn html_escape_all_specials() {
        assert_eq!(
            html_escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
    }

    #[test]
    fn code_spans_render_as_code_and_stay_escaped() {
        let w = "run `medgate lock <dir>` then `a|b`; a lone ` stays";
        assert_eq!(
            html_code_spans(w),
            "run <code>medgate lock &lt;dir&gt;</code> then <code>a|b</code>; a lone ` stays"
        );
        assert_eq!(
            typst_code_spans("see `x\"]#y` #z"),
            "see #raw(\"x\\\"]#y\") \\#z"
        );
        assert_eq!(md_code_spans("`*x*` *y*"), "`*x*` \\*y\\*");
        assert_eq!(code_spans("``"), vec![(false, "``")]);
        assert_eq!(html_code_spans("<b>"), "&lt;b&gt;");
    }
}
