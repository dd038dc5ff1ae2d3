//! The algorithm-7 key template (`hash_pvar`) as the configuration holds it: the text as
//! written and the compiled [`proxy::Template`](crate::proxy::Template), whose parser (in
//! `proxy::keys`) is the one definition of the supported pseudo-variables.
//!
//! Only the variables the proxy can evaluate from a request are accepted; anything else is a
//! configuration error rather than Kamailio's runtime `<null>`.

use crate::proxy::Template;
pub use crate::proxy::TemplateError;

/// A parsed `hash_pvar`, e.g. `"$fU@$ci"`.
///
/// Guarantees: the template has at least one variable or non-blank text; the hashed string is
/// the evaluation, whitespace-trimmed (reference §4, alg 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashTemplate {
    /// The template as written.
    pub source: String,
    /// The compiled template the proxy evaluates.
    pub compiled: Template,
}

impl HashTemplate {
    /// Parses a template; `$` always starts a variable.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        Ok(HashTemplate {
            source: source.to_owned(),
            compiled: Template::parse(source)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::keys::TemplatePart;

    #[test]
    fn parses_supported_variables() {
        let t = HashTemplate::parse("$fU@$fd-$hdr(X-Tenant)$ci").unwrap();
        assert_eq!(
            t.compiled.parts(),
            &[
                TemplatePart::FromUser,
                TemplatePart::Text(b"@".as_slice().into()),
                TemplatePart::FromHost,
                TemplatePart::Text(b"-".as_slice().into()),
                TemplatePart::Header(b"X-Tenant".as_slice().into()),
                TemplatePart::CallId,
            ]
        );
        for v in crate::proxy::keys::SUPPORTED_VARIABLES
            .split(' ')
            .filter(|v| !v.contains('('))
        {
            assert!(HashTemplate::parse(v).is_ok(), "{v}");
        }
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
