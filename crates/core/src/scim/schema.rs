//! What the SCIM service publishes about itself (RFC 7643 §5–7): the service provider
//! configuration, the `User` and `Group` resource types, and the schemas of the attributes it
//! keeps — `userName` and a group's `displayName` are immutable here, because a user's name is
//! their namespace and a group's name is an `<org>:<team>` — plus the three schemas that
//! describe the discovery documents themselves.

use serde_json::{Value, json};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const SPC: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// The most resources one list answers with.
pub const MAX_RESULTS: usize = 1000;

/// Every attribute name the service knows, in its canonical case.
const NAMES: &[&str] = &[
    "id",
    "externalId",
    "userName",
    "displayName",
    "name",
    "formatted",
    "familyName",
    "givenName",
    "active",
    "emails",
    "value",
    "type",
    "primary",
    "display",
    "$ref",
    "groups",
    "members",
    "meta",
    "schemas",
];

/// `name` in its canonical case when the service knows it (attribute names ignore case).
pub fn canonical(name: &str) -> String {
    NAMES.iter().find(|n| n.eq_ignore_ascii_case(name)).map_or_else(|| name.to_owned(), |n| (*n).to_owned())
}

struct A {
    name: &'static str,
    ty: &'static str,
    multi: bool,
    required: bool,
    mutability: &'static str,
    returned: &'static str,
    uniqueness: &'static str,
    case_exact: bool,
    description: &'static str,
    refs: &'static [&'static str],
    subs: Vec<Value>,
}

fn a(name: &'static str, ty: &'static str, description: &'static str) -> A {
    A {
        name,
        ty,
        multi: false,
        required: false,
        mutability: "readWrite",
        returned: "default",
        uniqueness: "none",
        case_exact: false,
        description,
        refs: &[],
        subs: vec![],
    }
}

impl A {
    fn multi(mut self) -> A {
        self.multi = true;
        self
    }
    fn required(mut self) -> A {
        self.required = true;
        self
    }
    fn mutability(mut self, m: &'static str) -> A {
        self.mutability = m;
        self
    }
    fn unique(mut self, u: &'static str) -> A {
        self.uniqueness = u;
        self
    }
    fn exact(mut self) -> A {
        self.case_exact = true;
        self
    }
    fn refs(mut self, r: &'static [&'static str]) -> A {
        self.refs = r;
        self
    }
    fn subs(mut self, s: Vec<A>) -> A {
        self.subs = s.into_iter().map(A::json).collect();
        self
    }
    fn json(self) -> Value {
        let mut v = json!({
            "name": self.name, "type": self.ty, "multiValued": self.multi, "description": self.description,
            "required": self.required, "caseExact": self.case_exact, "mutability": self.mutability,
            "returned": self.returned, "uniqueness": self.uniqueness,
        });
        if !self.refs.is_empty() {
            v["referenceTypes"] = json!(self.refs);
        }
        if !self.subs.is_empty() {
            v["subAttributes"] = Value::Array(self.subs);
        }
        v
    }
}

fn schema(id: &str, name: &str, description: &str, attrs: Vec<A>, base: &str) -> Value {
    json!({
        "schemas": [SCHEMA], "id": id, "name": name, "description": description,
        "attributes": attrs.into_iter().map(A::json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    })
}

/// Every schema, `base` being the service's URL (`…/scim/v2`).
pub fn schemas(base: &str) -> Vec<Value> {
    let user = vec![
        a("userName", "string", "The account name here, also its namespace; cannot change.")
            .required()
            .mutability("immutable")
            .unique("server"),
        a("displayName", "string", "The name shown for the user."),
        a("name", "complex", "The user's name.").subs(vec![
            a("formatted", "string", "The full name."),
            a("familyName", "string", "The family name."),
            a("givenName", "string", "The given name."),
        ]),
        a("active", "boolean", "Whether the account may sign in; false ends its sessions and revokes its tokens."),
        a("emails", "complex", "Email addresses.").multi().subs(vec![
            a("value", "string", "An email address."),
            a("type", "string", "work, home or other."),
            a("primary", "boolean", "The preferred address."),
        ]),
        a("groups", "complex", "The groups (teams) the user belongs to.").multi().mutability("readOnly").subs(vec![
            a("value", "string", "The group's id.").mutability("readOnly"),
            a("$ref", "reference", "The group's URI.").mutability("readOnly").refs(&["Group"]),
            a("display", "string", "The group's name.").mutability("readOnly"),
        ]),
    ];
    let group = vec![
        a("displayName", "string", "<org>:<team> (or <team> with an organization's token); cannot change.")
            .required()
            .mutability("immutable")
            .unique("server"),
        a("members", "complex", "The group's users (groups do not nest here).").multi().subs(vec![
            a("value", "string", "The user's id.").mutability("immutable"),
            a("$ref", "reference", "The user's URI.").mutability("immutable").refs(&["User"]),
        ]),
    ];
    let spc = vec![
        a("documentationUri", "reference", "Documentation.").mutability("readOnly").refs(&["external"]),
        a("patch", "complex", "PATCH support.").mutability("readOnly").required(),
        a("bulk", "complex", "Bulk support.").mutability("readOnly").required(),
        a("filter", "complex", "Filter support.").mutability("readOnly").required(),
        a("changePassword", "complex", "Password changes.").mutability("readOnly").required(),
        a("sort", "complex", "Sorting.").mutability("readOnly").required(),
        a("etag", "complex", "ETags.").mutability("readOnly").required(),
        a("authenticationSchemes", "complex", "How to authenticate.").multi().mutability("readOnly").required(),
    ];
    let rt = vec![
        a("id", "string", "The resource type's id.").mutability("readOnly"),
        a("name", "string", "The resource type's name.").mutability("readOnly").required(),
        a("description", "string", "What it is.").mutability("readOnly"),
        a("endpoint", "reference", "Its endpoint.").mutability("readOnly").required().refs(&["uri"]),
        a("schema", "reference", "Its core schema.").mutability("readOnly").required().exact().refs(&["uri"]),
        a("schemaExtensions", "complex", "Its schema extensions.").multi().mutability("readOnly"),
    ];
    let sch = vec![
        a("id", "string", "The schema's URI.").mutability("readOnly").required(),
        a("name", "string", "The schema's name.").mutability("readOnly"),
        a("description", "string", "What it describes.").mutability("readOnly"),
        a("attributes", "complex", "Its attributes.").multi().mutability("readOnly").required(),
    ];
    vec![
        schema(USER, "User", "A user account", user, base),
        schema(GROUP, "Group", "A team of an organization", group, base),
        schema(SPC, "ServiceProviderConfig", "What this service supports", spc, base),
        schema(RESOURCE_TYPE, "ResourceType", "A resource type", rt, base),
        schema(SCHEMA, "Schema", "A schema", sch, base),
    ]
}

/// The `User` and `Group` resource types.
pub fn resource_types(base: &str) -> Vec<Value> {
    [("User", "/Users", USER, "User accounts"), ("Group", "/Groups", GROUP, "Teams, named <org>:<team>")]
        .into_iter()
        .map(|(id, endpoint, schema, description)| {
            json!({
                "schemas": [RESOURCE_TYPE], "id": id, "name": id, "endpoint": endpoint, "description": description,
                "schema": schema, "schemaExtensions": [],
                "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{id}")},
            })
        })
        .collect()
}

/// The service provider configuration.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "Bearer token", "primary": true,
            "description": "A SCIM token an organization's owner or the administrator created in portcullis",
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}
