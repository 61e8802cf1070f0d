//! SCIM PATCH (RFC 7644 §3.5.2) applied to a resource's JSON: `add`, `replace` and `remove`,
//! with or without a path, on attributes, sub-attributes and the elements of multi-valued
//! attributes a filter selects. The result is then checked like a PUT body, so one validation
//! decides what may change. Identity providers' dialects are accepted: operation names in any
//! case, Entra ID's `"False"`/`"True"` for booleans (checked later), a `remove` of `members`
//! that lists the members to remove, and a filtered path that names an element not there yet
//! (`emails[type eq "work"].value` adds the work address).

use serde_json::{Map, Value};

use super::filter::{self, Filter, PatchPath};
use super::schema::canonical;

/// How many operations one PATCH may carry.
pub const MAX_OPERATIONS: usize = 1000;

/// Why a PATCH cannot be applied: the SCIM error type and a message.
#[derive(Debug, PartialEq, Eq)]
pub struct PatchError(pub &'static str, pub String);

fn invalid_path(m: String) -> PatchError {
    PatchError("invalidPath", m)
}

/// Applies the operations of a PatchOp body to `doc`; `multi` names the multi-valued attributes.
pub fn apply(doc: &mut Map<String, Value>, body: &Value, multi: &[&str]) -> Result<(), PatchError> {
    let ops = filter::member(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| PatchError("invalidSyntax", "a PatchOp carries an Operations list".into()))?;
    if ops.len() > MAX_OPERATIONS {
        return Err(PatchError("tooMany", format!("at most {MAX_OPERATIONS} operations per PATCH")));
    }
    for op in ops {
        let kind = filter::member(op, "op").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
        let path = match filter::member(op, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.trim().is_empty() => None,
            Some(Value::String(p)) => Some(filter::parse_path(p).map_err(invalid_path)?),
            Some(_) => return Err(PatchError("invalidPath", "a path is a string".into())),
        };
        let value = filter::member(op, "value").cloned();
        match (kind.as_str(), path, value) {
            ("add" | "replace", None, Some(Value::Object(m))) => {
                for (k, v) in m {
                    let key = canonical(filter::bare_name(&k));
                    if key.contains('.') {
                        let p = filter::parse_path(&key).map_err(invalid_path)?;
                        set(doc, &p, v, kind == "add", multi)?;
                    } else {
                        merge(doc, key, v, kind == "add", multi);
                    }
                }
            }
            ("add" | "replace", None, _) => {
                return Err(PatchError("invalidValue", format!("{kind} without a path takes an object of attributes")));
            }
            ("add" | "replace", Some(p), Some(v)) => set(doc, &p, v, kind == "add", multi)?,
            ("add" | "replace", Some(_), None) => {
                return Err(PatchError("invalidValue", format!("{kind} needs a value")));
            }
            ("remove", Some(p), value) => remove(doc, &p, value),
            ("remove", None, _) => return Err(PatchError("noTarget", "remove needs a path".into())),
            _ => {
                return Err(PatchError("invalidSyntax", format!("unknown operation {kind:?}: add, replace or remove")));
            }
        }
    }
    Ok(())
}

/// `key`'s value in `doc`: added to (multi-valued `add`) or replaced.
fn merge(doc: &mut Map<String, Value>, key: String, v: Value, add: bool, multi: &[&str]) {
    if add && multi.contains(&key.as_str()) {
        let items = match v {
            Value::Array(a) => a,
            v => vec![v],
        };
        let list = doc.entry(key).or_insert_with(|| Value::Array(vec![]));
        if !list.is_array() {
            *list = Value::Array(vec![]);
        }
        if let Value::Array(a) = list {
            for item in items {
                if !a.iter().any(|e| same_element(e, &item)) {
                    a.push(item);
                }
            }
        }
    } else if add && let (Some(Value::Object(old)), Value::Object(new)) = (doc.get_mut(&key), &v) {
        for (k, x) in new {
            old.insert(canonical(k), x.clone());
        }
    } else {
        doc.insert(key, v);
    }
}

/// Elements are the same when their `value`s are (else when they are equal).
fn same_element(a: &Value, b: &Value) -> bool {
    match (filter::member(a, "value"), filter::member(b, "value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn set(doc: &mut Map<String, Value>, p: &PatchPath, v: Value, add: bool, multi: &[&str]) -> Result<(), PatchError> {
    let attr = canonical(&p.attr);
    match (&p.filter, &p.sub) {
        (None, None) => merge(doc, attr, v, add, multi),
        (None, Some(sub)) => {
            let obj = doc.entry(attr.clone()).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(o) = obj else { return Err(invalid_path(format!("{attr} has no sub-attributes"))) };
            o.insert(canonical(sub), v);
        }
        (Some(f), sub) => {
            let Some(Value::Array(items)) = doc.get_mut(&attr) else {
                return create_element(doc, attr, f, sub.as_deref(), v);
            };
            let mut hit = false;
            for e in items.iter_mut().filter(|e| f.matches(e)) {
                hit = true;
                match (sub, &mut *e) {
                    (Some(s), Value::Object(o)) => {
                        o.insert(canonical(s), v.clone());
                    }
                    (None, Value::Object(o)) if add => {
                        if let Value::Object(n) = &v {
                            o.extend(n.iter().map(|(k, x)| (canonical(k), x.clone())));
                        }
                    }
                    _ => *e = v.clone(),
                }
            }
            if !hit {
                return create_element(doc, attr, f, sub.as_deref(), v);
            }
        }
    }
    Ok(())
}

/// A filtered path that selects nothing: `attr[key eq "x"].sub` makes the element
/// `{key: x, sub: value}`; any other filter has no target.
fn create_element(
    doc: &mut Map<String, Value>,
    attr: String,
    f: &Filter,
    sub: Option<&str>,
    v: Value,
) -> Result<(), PatchError> {
    let (Filter::Compare(key, filter::Op::Eq, want), Some(sub)) = (f, sub) else {
        return Err(PatchError("noTarget", format!("no element of {attr} matches the path's filter")));
    };
    let mut e = Map::new();
    e.insert(canonical(&key.join(".")), want.clone());
    e.insert(canonical(sub), v);
    let list = doc.entry(attr).or_insert_with(|| Value::Array(vec![]));
    match list {
        Value::Array(a) => a.push(Value::Object(e)),
        other => *other = Value::Array(vec![Value::Object(e)]),
    }
    Ok(())
}

fn remove(doc: &mut Map<String, Value>, p: &PatchPath, value: Option<Value>) {
    let attr = canonical(&p.attr);
    match (&p.filter, &p.sub) {
        (None, None) => match (doc.get_mut(&attr), value) {
            // `remove members` with the members to remove (Entra ID)
            (Some(Value::Array(items)), Some(v)) => {
                let gone: Vec<Value> = if let Value::Array(a) = v { a } else { vec![v] };
                items.retain(|e| !gone.iter().any(|g| same_element(e, g)));
            }
            _ => {
                doc.remove(&attr);
            }
        },
        (None, Some(sub)) => {
            if let Some(Value::Object(o)) = doc.get_mut(&attr) {
                let k = o.keys().find(|k| k.eq_ignore_ascii_case(sub)).cloned();
                k.map(|k| o.remove(&k));
            }
        }
        (Some(f), None) => {
            if let Some(Value::Array(items)) = doc.get_mut(&attr) {
                items.retain(|e| !f.matches(e));
            }
        }
        (Some(f), Some(sub)) => {
            if let Some(Value::Array(items)) = doc.get_mut(&attr) {
                for e in items.iter_mut().filter(|e| f.matches(e)) {
                    if let Value::Object(o) = e {
                        let k = o.keys().find(|k| k.eq_ignore_ascii_case(sub)).cloned();
                        k.map(|k| o.remove(&k));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MULTI: &[&str] = &["emails", "members"];

    fn run(doc: Value, ops: Value) -> Result<Value, PatchError> {
        let Value::Object(mut d) = doc else { unreachable!() };
        apply(&mut d, &json!({ "schemas": [super::super::schema::PATCH_OP], "Operations": ops }), MULTI)?;
        Ok(Value::Object(d))
    }

    #[test]
    fn operations_change_attributes_elements_and_sub_attributes() {
        let doc = json!({"userName": "alice", "emails": [{"value": "a@x", "type": "work"}], "members": []});
        let out = run(
            doc,
            json!([
                {"op": "Replace", "path": "displayName", "value": "Alice"},
                {"op": "add", "path": "emails", "value": [{"value": "a@y", "type": "home"}, {"value": "a@x"}]},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "a@z"},
                {"op": "add", "path": "name.givenName", "value": "Al"},
                {"op": "add", "value": {"active": "False", "NAME": {"familyName": "Liddell"}}},
                {"op": "add", "path": "members", "value": [{"value": "7"}, {"value": "8"}]},
                {"op": "remove", "path": "members[value eq \"7\"]"},
                {"op": "add", "path": "members", "value": {"value": "8"}},
            ]),
        )
        .unwrap();
        assert_eq!(out["displayName"], "Alice");
        assert_eq!(out["emails"], json!([{"value": "a@z", "type": "work"}, {"value": "a@y", "type": "home"}]));
        assert_eq!(out["name"], json!({"givenName": "Al", "familyName": "Liddell"}));
        assert_eq!((out["active"].as_str(), &out["members"]), (Some("False"), &json!([{"value": "8"}])));
    }

    #[test]
    fn removals_and_the_dialects_of_identity_providers() {
        let doc = json!({"displayName": "x", "members": [{"value": "1"}, {"value": "2"}, {"value": "3"}],
                         "emails": [{"value": "a@x", "type": "work", "primary": true}]});
        let out = run(
            doc,
            json!([
                {"op": "Remove", "path": "members", "value": [{"value": "1"}, {"value": "3"}]},
                {"op": "remove", "path": "emails[type eq \"work\"].primary"},
                {"op": "remove", "path": "displayName"},
                {"op": "replace", "path": "emails[type eq \"home\"].value", "value": "b@y"},
            ]),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "2"}]));
        assert_eq!(out["emails"], json!([{"value": "a@x", "type": "work"}, {"type": "home", "value": "b@y"}]));
        assert!(out.get("displayName").is_none());
        assert_eq!(run(json!({}), json!([{"op": "remove", "path": "members"}])).unwrap(), json!({}));
    }

    #[test]
    fn malformed_operations_are_refused_with_their_scim_type() {
        let err = |ops: Value| run(json!({"emails": []}), ops).unwrap_err().0;
        assert_eq!(err(json!([{"op": "remove"}])), "noTarget");
        assert_eq!(err(json!([{"op": "move", "path": "x", "value": 1}])), "invalidSyntax");
        assert_eq!(err(json!([{"op": "add", "value": "x"}])), "invalidValue");
        assert_eq!(err(json!([{"op": "add", "path": "a.b.c", "value": 1}])), "invalidPath");
        assert_eq!(err(json!([{"op": "add", "path": 5, "value": 1}])), "invalidPath");
        assert_eq!(err(json!([{"op": "replace", "path": "emails[value co \"x\"]", "value": {}}])), "noTarget");
        assert_eq!(err(json!([{"op": "replace", "path": "emails"}])), "invalidValue");
        let many: Vec<Value> = (0..1001).map(|_| json!({"op": "remove", "path": "x"})).collect();
        assert_eq!(err(Value::Array(many)), "tooMany");
        let Value::Object(mut d) = json!({}) else { unreachable!() };
        assert_eq!(apply(&mut d, &json!({"ops": []}), MULTI).unwrap_err().0, "invalidSyntax");
    }
}
