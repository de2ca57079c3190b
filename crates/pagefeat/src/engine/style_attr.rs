//! The `style` attribute the embedded engine rewrites to make Blitz lay an element out as
//! Chromium does (fonts, broken images, controls): its name, and the page's own declarations
//! with the engine's appended. The page's original value is kept by each caller and reported
//! in the tree instead.

/// The `style` attribute's qualified name (no namespace), as Blitz's mutator takes it.
pub(crate) fn style_name() -> blitz_dom::QualName {
    blitz_dom::QualName::new(None, blitz_dom::ns!(), blitz_dom::local_name!("style"))
}

/// `own` (the element's `style` attribute, `None` when absent) followed by `declarations`,
/// with a `;` between them when `own` does not already end its last declaration, so the
/// appended declarations win over the page's own by order.
pub(crate) fn appended(own: Option<&str>, declarations: &str) -> String {
    let own = own.unwrap_or_default();
    let separator = if own.trim().is_empty() || own.trim_end().ends_with(';') {
        ""
    } else {
        ";"
    };
    format!("{own}{separator} {declarations}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_follow_the_pages_own() {
        assert_eq!(appended(None, "a: b;"), " a: b;");
        assert_eq!(appended(Some("color: red"), "a: b;"), "color: red; a: b;");
        assert_eq!(
            appended(Some("color: red; "), "a: b;"),
            "color: red;  a: b;"
        );
    }
}
