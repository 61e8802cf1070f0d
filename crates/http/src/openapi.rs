//! The OpenAPI document of `/api/v1`: `openapi.json` as written, with what depends on the
//! policy's vocabulary filled in from `policy`'s tables (`Category::ALL`, `Category::SWITCHES`),
//! so that a new category needs no edit here.

use std::sync::LazyLock;

use policy::Category;
use serde_json::{Value, json};

const WRITTEN: &str = include_str!("openapi.json");

/// Where the category switches go: the settings' and a team rule's `restricted_images`.
const SWITCHES_AT: [&str; 2] = [
    "/components/schemas/Settings/properties/restricted_images/properties",
    "/paths/~1api~1v1~1orgs~1{org}~1teams~1{team}~1settings/put/requestBody/content/application~1json/schema/properties/restricted_images/properties",
];

/// Where a signature rule's `images` is described.
const IMAGES_AT: &str = "/components/schemas/Settings/properties/signatures/properties/rules/items/properties/images";

/// The document, built once.
pub static DOCUMENT: LazyLock<String> = LazyLock::new(|| build(WRITTEN));

fn build(written: &str) -> String {
    let mut doc: Value = serde_json::from_str(written).expect("openapi.json is JSON (checked by a test)");
    for at in SWITCHES_AT {
        let Some(Value::Object(props)) = doc.pointer_mut(at) else { panic!("openapi.json has no {at}") };
        for s in Category::SWITCHES {
            props.insert(s.flag.into(), json!({ "type": "boolean", "description": format!("Allow {}", s.name.label) }));
        }
    }
    let keys: Vec<&str> = Category::ALL.iter().map(|c| c.key).collect();
    let Some(images) = doc.pointer_mut(IMAGES_AT) else { panic!("openapi.json has no {IMAGES_AT}") };
    images["description"] = format!(
        "A category ({}; org for organization), a repository pattern (docker.io/library/*, ghcr.io/acme/app) or *",
        keys.join(", ")
    )
    .into();
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_is_in_the_document() {
        let doc: Value = serde_json::from_str(&DOCUMENT).unwrap();
        for at in SWITCHES_AT {
            let props = doc.pointer(at).unwrap();
            for s in Category::SWITCHES {
                assert_eq!(props[s.flag]["type"], "boolean", "{} at {at}", s.flag);
            }
        }
        let images = doc.pointer(IMAGES_AT).unwrap()["description"].as_str().unwrap();
        assert!(Category::ALL.iter().all(|c| images.contains(c.key)), "{images}");
    }
}
