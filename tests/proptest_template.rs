//! Property tests of the template engine: parsing never panics, whatever the text; literal
//! text (a value from the environment) always renders back to itself; a parsed template
//! written back with `Display` parses to the same template.

use std::collections::HashMap;

use joincanary::diag::substitute_template;
use joincanary::template::{Context, Template, escape_literal};
use proptest::prelude::*;

/// Text rich in what templates are made of: braces, pipes, quotes, backslashes, names.
fn template_ish() -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("|".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just(" ".to_string()),
        Just("json".to_string()),
        Just("url".to_string()),
        Just("region".to_string()),
        Just("v".to_string()),
        any::<char>().prop_map(String::from),
        "[a-z0-9_.-]{1,6}",
    ];
    proptest::collection::vec(atoms, 0..24).prop_map(|parts| parts.concat())
}

fn vars() -> HashMap<String, String> {
    [("region", "eu-1"), ("v", "a\"b{{c}}"), ("uuid", "u")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsing_and_rendering_never_panic(text in template_ish()) {
        if let Ok(t) = Template::parse(&text) {
            let vars = vars();
            let _ = t.render(&vars);
            let _ = t.render_in(&vars, Context::Regex);
            let _ = t.render_in(&vars, Context::Xml);
            let _ = t.render_placeholder("x");
            // Display writes template source that parses back to the same template.
            let again = Template::parse(&t.to_string());
            prop_assert_eq!(again.as_ref(), Ok(&t), "{:?} -> {}", text, t);
        }
    }

    #[test]
    fn literal_text_round_trips(text in template_ish()) {
        let escaped = escape_literal(&text);
        let t = Template::parse(&escaped).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(t.is_literal(), "{:?} reads a variable", text);
        prop_assert_eq!(t.render(&HashMap::new()), Ok(text.clone()));
        prop_assert_eq!(Template::literal(&text).render(&HashMap::new()), Ok(text.clone()));
        // Between other template text too: the neighbours cannot turn it into a hole.
        let t = Template::parse(&format!("{{{{region}}}}{escaped}{{{{v|json}}}}{{"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            t.render(&vars()),
            Ok(format!("eu-1{text}a\\\"b{{{{c}}}}{{"))
        );
    }

    #[test]
    fn environment_values_are_data_in_templates(value in template_ish()) {
        let env: HashMap<String, String> = [("V".to_string(), value.clone())].into_iter().collect();
        let substituted = substitute_template("{{region}}/${V:-}/${UNSET:-d}{{v|url}}", &env)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let t = Template::parse(&substituted.text)
            .map_err(|e| TestCaseError::fail(format!("{value:?}: {e}")))?;
        prop_assert_eq!(t.vars().collect::<Vec<_>>(), vec!["region", "v"]);
        let rendered = t.render(&vars()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(rendered, format!("eu-1/{value}/da%22b%7B%7Bc%7D%7D"));
    }
}
