//! The algorithm-7 key template (`hash_pvar`): literal text and Kamailio pseudo-variables.
//!
//! Only the variables the proxy can evaluate from a request are accepted; anything else is a
//! configuration error rather than Kamailio's runtime `<null>`.

use std::fmt;

/// A pseudo-variable the proxy evaluates from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PVar {
    /// `$ci`: Call-ID.
    CallId,
    /// `$fu`: From URI.
    FromUri,
    /// `$fU`: From URI user.
    FromUser,
    /// `$fd`: From URI host.
    FromDomain,
    /// `$tu`: To URI.
    ToUri,
    /// `$tU`: To URI user.
    ToUser,
    /// `$td`: To URI host.
    ToDomain,
    /// `$ru`: Request-URI.
    RequestUri,
    /// `$rU`: Request-URI user.
    RequestUser,
    /// `$rd`: Request-URI host.
    RequestDomain,
    /// `$au`: user name of the Authorization / Proxy-Authorization credentials.
    AuthUser,
    /// `$si`: source IP address.
    SourceIp,
    /// `$sp`: source port.
    SourcePort,
    /// `$hdr(Name)`: body of the first header `Name` (case-insensitive).
    Header(String),
}

impl PVar {
    const NAMED: [(&'static str, PVar); 13] = [
        ("ci", PVar::CallId),
        ("fu", PVar::FromUri),
        ("fU", PVar::FromUser),
        ("fd", PVar::FromDomain),
        ("tu", PVar::ToUri),
        ("tU", PVar::ToUser),
        ("td", PVar::ToDomain),
        ("ru", PVar::RequestUri),
        ("rU", PVar::RequestUser),
        ("rd", PVar::RequestDomain),
        ("au", PVar::AuthUser),
        ("si", PVar::SourceIp),
        ("sp", PVar::SourcePort),
    ];
}

impl fmt::Display for PVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let PVar::Header(h) = self {
            return write!(f, "$hdr({h})");
        }
        let name = Self::NAMED
            .iter()
            .find(|(_, v)| v == self)
            .map_or("?", |(n, _)| n);
        write!(f, "${name}")
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text copied as is.
    Literal(String),
    /// A variable's value (Kamailio prints `<null>` for a missing one).
    Var(PVar),
}

/// A parsed `hash_pvar`, e.g. `"$fU@$ci"`.
///
/// Guarantees: at least one part; the hashed string is the concatenation of the parts,
/// whitespace-trimmed (reference §4, alg 7); `compiled` is the proxy's evaluator for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashTemplate {
    /// The template as written.
    pub source: String,
    /// Its pieces in order.
    pub parts: Vec<Part>,
    /// The same template as the proxy evaluates it.
    pub compiled: crate::proxy::Template,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {at}: {what}")]
pub struct TemplateError {
    /// Byte offset in the template.
    pub at: usize,
    /// What went wrong.
    pub what: String,
}

const SUPPORTED: &str = "$ci $fu $fU $fd $tu $tU $td $ru $rU $rd $au $si $sp $hdr(Name)";

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

impl HashTemplate {
    /// Parses a template; `$` always starts a variable.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let b = source.as_bytes();
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < b.len() {
            let Some(off) = source[i..].find('$') else {
                lit.push_str(&source[i..]);
                break;
            };
            lit.push_str(&source[i..i + off]);
            let at = i + off;
            let mut j = at + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let name = &source[at + 1..j];
            let var = if name == "hdr" {
                let rest = &source[j..];
                let close = rest.find(')');
                match (rest.strip_prefix('('), close) {
                    (Some(_), Some(c)) if c > 1 && rest[1..c].bytes().all(is_token) => {
                        j += c + 1;
                        PVar::Header(rest[1..c].to_owned())
                    }
                    _ => {
                        return Err(TemplateError {
                            at,
                            what: "expected $hdr(Name) with a header name".into(),
                        });
                    }
                }
            } else if let Some((_, v)) = PVar::NAMED.iter().find(|(n, _)| *n == name) {
                v.clone()
            } else {
                let shown = if name.is_empty() {
                    source[at..].chars().take(4).collect::<String>()
                } else {
                    format!("${name}")
                };
                return Err(TemplateError {
                    at,
                    what: format!("unsupported variable {shown:?} (supported: {SUPPORTED})"),
                });
            };
            if !lit.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(var));
            i = j;
        }
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        if parts
            .iter()
            .all(|p| matches!(p, Part::Literal(t) if t.trim().is_empty()))
        {
            return Err(TemplateError {
                at: 0,
                what: "expected a template with at least one variable or non-blank text".into(),
            });
        }
        // The proxy's parser is the one that runs; it must agree (it accepts a superset).
        let compiled = crate::proxy::Template::parse(source).map_err(|e| TemplateError {
            at: e.at,
            what: e.what.to_owned(),
        })?;
        Ok(Self {
            source: source.to_owned(),
            parts,
            compiled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_variables() {
        let t = HashTemplate::parse("$fU@$fd-$hdr(X-Tenant)$ci").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Var(PVar::FromUser),
                Part::Literal("@".into()),
                Part::Var(PVar::FromDomain),
                Part::Literal("-".into()),
                Part::Var(PVar::Header("X-Tenant".into())),
                Part::Var(PVar::CallId),
            ]
        );
        for v in PVar::NAMED.iter().map(|(_, v)| v.to_string()) {
            assert!(HashTemplate::parse(&v).is_ok(), "{v}");
        }
        assert_eq!(PVar::Header("A".into()).to_string(), "$hdr(A)");
    }

    #[test]
    fn refuses_unsupported() {
        let cases = [
            ("$var(x)", 0, "\"$var\""),
            ("a$avp(s:x)", 1, "\"$avp\""),
            ("$fUx", 0, "\"$fUx\""),
            ("$", 0, "\"$\""),
            ("$hdr()", 0, "$hdr(Name)"),
            ("$hdr(A", 0, "$hdr(Name)"),
            ("   ", 0, "at least one"),
        ];
        for (src, at, what) in cases {
            let e = HashTemplate::parse(src).unwrap_err();
            assert_eq!(e.at, at, "{src}");
            assert!(e.what.contains(what), "{src}: {}", e.what);
        }
    }
}
