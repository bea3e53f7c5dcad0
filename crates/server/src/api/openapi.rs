//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`: the routes, described here, over
//! schemas that the `flotilla_api` types derive (utoipa's `ToSchema`, which reads their serde
//! attributes), so a wire type and its schema cannot drift apart.

use std::sync::LazyLock;

use axum::{http::header, response::IntoResponse};
use flotilla_api::{
    API_VERSION, BundleRevision, ErrorBody, Kind, List, Object, RolloutStatus, RolloutUndo,
    ServerVersion,
    agent::{
        CONTENT_PATH, InlineContent, REGISTER_PATH, RegisterRequest, RegisterResponse, SYNC_PATH,
        SyncRequest, SyncResponse,
    },
};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        ArrayBuilder, ComponentsBuilder, Content, ContentBuilder, Discriminator, HttpMethod,
        InfoBuilder, ObjectBuilder, OneOfBuilder, OpenApi, OpenApiBuilder, PathItem, Paths,
        PathsBuilder, Ref, RefOr, Required, Response, ResponseBuilder, Schema, SecurityRequirement,
        Type,
        path::{OperationBuilder, Parameter, ParameterBuilder, ParameterIn},
        request_body::{RequestBody, RequestBodyBuilder},
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};

/// The document never changes while the server runs (it depends on types and constants only),
/// so it is built and serialized once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    serde_json::to_string(&openapi()).expect("an OpenAPI document always serializes")
});

pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

/// The name of the bearer security scheme every admin and agent endpoint uses.
const BEARER: &str = "bearer";

pub fn openapi() -> OpenApi {
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("flotilla")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "GitOps management plane for fleets of Kubernetes clusters. Admin endpoints \
                     take `Authorization: Bearer <admin token>`; agent endpoints take the cluster \
                     credential.",
                ))
                .build(),
        )
        .components(Some(
            ComponentsBuilder::new()
                .schemas_from_iter(schemas())
                .security_scheme(
                    BEARER,
                    SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
                )
                .build(),
        ))
        .security(Some([SecurityRequirement::new(
            BEARER,
            Vec::<String>::new(),
        )]))
        .paths(paths())
        .build()
}

// ---------------------------------------------------------------------------------------------
// Schemas

/// Every named schema: one per kind (`Cluster`, …) with its spec and status, one list per kind
/// (`ClusterList`, …), the error body and the agent protocol, with everything they refer to.
fn schemas() -> Vec<(String, RefOr<Schema>)> {
    let mut schemas = Vec::new();
    for kind in Kind::ALL {
        match kind {
            Kind::Cluster => add_kind::<flotilla_api::ClusterSpec, flotilla_api::ClusterStatus>(
                kind,
                &mut schemas,
            ),
            Kind::ClusterGroup => add_kind::<
                flotilla_api::ClusterGroupSpec,
                flotilla_api::ClusterGroupStatus,
            >(kind, &mut schemas),
            Kind::Bundle => {
                add_kind::<flotilla_api::BundleSpec, flotilla_api::BundleStatus>(kind, &mut schemas)
            }
            Kind::RegistrationToken => add_kind::<
                flotilla_api::RegistrationTokenSpec,
                flotilla_api::RegistrationTokenStatus,
            >(kind, &mut schemas),
            Kind::GitRepo => add_kind::<flotilla_api::GitRepoSpec, flotilla_api::GitRepoStatus>(
                kind,
                &mut schemas,
            ),
            Kind::Secret => {
                add_kind::<flotilla_api::SecretSpec, flotilla_api::SecretStatus>(kind, &mut schemas)
            }
        }
    }
    add_list::<BundleRevision>(&mut schemas);
    add::<ErrorBody>(&mut schemas);
    add::<ServerVersion>(&mut schemas);
    add::<RolloutStatus>(&mut schemas);
    add::<RolloutUndo>(&mut schemas);
    add::<RegisterRequest>(&mut schemas);
    add::<RegisterResponse>(&mut schemas);
    add::<SyncRequest>(&mut schemas);
    add::<SyncResponse>(&mut schemas);
    schemas
}

/// Adds a type's schema under its own name, and the schemas it refers to.
fn add<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

/// Adds a type's schema and a list of it (`{Type}List`, as list endpoints send it).
fn add_list<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    add::<T>(schemas);
    let mut list = List::<T>::schema();
    object_schema(&mut list).properties.insert(
        "items".to_owned(),
        ArrayBuilder::new()
            .items(Ref::from_schema_name(T::name()))
            .into(),
    );
    schemas.push((format!("{}List", T::name()), list));
}

/// Adds a kind's document (`Object<Spec, Status>` under the kind's name, its `apiVersion` and
/// `kind` pinned to the values the server sends), its spec and status, and its list.
fn add_kind<Spec: ToSchema, Status: ToSchema>(
    kind: Kind,
    schemas: &mut Vec<(String, RefOr<Schema>)>,
) {
    let mut document = Object::<Spec, Status>::schema();
    for (property, value) in [("apiVersion", API_VERSION), ("kind", kind.as_str())] {
        let properties = &mut object_schema(&mut document).properties;
        // The field's doc comment stays with the pinned value.
        let description = match properties.get(property) {
            Some(RefOr::T(Schema::Object(field))) => field.description.clone(),
            _ => None,
        };
        properties.insert(
            property.to_owned(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([value]))
                .description(description)
                .into(),
        );
    }
    // The kind's own description (`flotilla explain KIND`) is its spec's doc comment; the
    // generic `Object`'s says only what every document holds.
    if let RefOr::T(Schema::Object(spec)) = Spec::schema()
        && spec.description.is_some()
    {
        object_schema(&mut document).description = spec.description;
    }
    schemas.push((kind.as_str().to_owned(), document));
    // A generic type's schema is named after the type alone (`Object`, `List`): the type
    // arguments are added here, and the list's items refer to the kind by its name.
    Object::<Spec, Status>::schemas(schemas);
    add::<Spec>(schemas);
    add::<Status>(schemas);
    let mut list = List::<Object<Spec, Status>>::schema();
    object_schema(&mut list).properties.insert(
        "items".to_owned(),
        ArrayBuilder::new().items(kind_ref(kind)).into(),
    );
    schemas.push((list_name(kind), list));
}

/// The object schema a struct derives.
fn object_schema(schema: &mut RefOr<Schema>) -> &mut utoipa::openapi::Object {
    match schema {
        RefOr::T(Schema::Object(object)) => object,
        _ => panic!("a struct with named fields derives an object schema"),
    }
}

fn list_name(kind: Kind) -> String {
    format!("{kind}List")
}

fn kind_ref(kind: Kind) -> Ref {
    Ref::from_schema_name(kind.as_str())
}

/// A document of any kind, told apart by its `kind`.
fn any_kind() -> RefOr<Schema> {
    let mut one_of = OneOfBuilder::new();
    let mut discriminator = Discriminator::new("kind");
    for kind in Kind::ALL {
        one_of = one_of.item(kind_ref(kind));
        discriminator
            .mapping
            .insert(kind.as_str().to_owned(), kind_ref(kind).ref_location);
    }
    one_of.discriminator(Some(discriminator)).into()
}

/// A page of documents of any kind (one kind per page: the one the URL names).
fn any_list() -> RefOr<Schema> {
    Kind::ALL
        .into_iter()
        .fold(OneOfBuilder::new(), |one_of, kind| {
            one_of.item(Ref::from_schema_name(list_name(kind)))
        })
        .into()
}

// ---------------------------------------------------------------------------------------------
// Paths

fn paths() -> Paths {
    let plural = ParameterBuilder::new()
        .name("plural")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(Kind::ALL.map(Kind::plural))),
        ))
        .build();
    let name = path_parameter("name");

    let apply = admin_operation("Create or replace a document of any kind")
        .parameters(Some(apply_parameters()))
        .request_body(Some(document_body()))
        .response(
            "200",
            json_response(
                "Replaced (with dryRun=All: would be; header Flotilla-Dry-Run: configured or unchanged)",
                any_kind(),
            ),
        )
        .response(
            "201",
            json_response(
                "Created (with dryRun=All: would be; header Flotilla-Dry-Run: created)",
                any_kind(),
            ),
        );
    let list = admin_operation(
        "List objects, filtered and keyset-paginated; or, with watch=true, stream their changes",
    )
    .parameters(Some(collection_parameters()))
    .response(
        "200",
        json_response(
            "A page of objects; with watch=true a stream of newline-delimited watch events              {\"type\": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, \"object\": …}, the current              objects first as ADDED (429 past the server's --max-watches; 410 for a              resourceVersion to resume from)",
            any_list(),
        ),
    );
    let create = admin_operation("Create an object")
        .request_body(Some(document_body()))
        .response("201", json_response("Created", any_kind()));
    let get =
        admin_operation("Get an object").response("200", json_response("The object", any_kind()));
    let replace = admin_operation("Create or replace an object (clusters: labels only)")
        .request_body(Some(document_body()))
        .response("200", json_response("Replaced", any_kind()))
        .response("201", json_response("Created", any_kind()));
    let delete = admin_operation("Delete an object").response(
        "200",
        json_response(
            "Deleted: a Kubernetes-style `Status` (`kind`, `status`, `message`)",
            ObjectBuilder::new().schema_type(Type::Object).into(),
        ),
    );

    let revisions = admin_operation("List a bundle's retained revisions, newest first")
        .parameter(path_parameter("name"))
        .response(
            "200",
            json_response(
                "The bundle's revisions (`flotilla history bundle NAME`)",
                Ref::from_schema_name(format!("{}List", BundleRevision::name())).into(),
            ),
        );

    let rollout_status = admin_operation("A bundle's rollout: overall phase and each wave's")
        .description(Some(
            "Phase Progressing, Paused, Succeeded, Halted, RollingBack, RolledBack or Frozen; \
             per wave its clusters, updated, ready, failed and soak remaining; why it stopped \
             (`flotilla rollout status BUNDLE`).",
        ))
        .parameter(path_parameter("name"))
        .response(
            "200",
            json_response("The rollout's status", schema_ref::<RolloutStatus>()),
        );
    let verb = ParameterBuilder::new()
        .name("verb")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(
            "`pause` (no cluster starts), `resume` (a paused or halted run goes on), `abort` \
             (clusters that took the new revision go back, paced) or `undo` (abort a run in \
             progress, or roll out a kept revision again: body `{\"toRevision\": N}`, default \
             the one before the stable revision)",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["pause", "resume", "abort", "undo"])),
        ))
        .build();
    let rollout_verb = admin_operation("Steer a bundle's rollout")
        .description(Some(
            "Accepted by the replica holding the singleton lease (409 elsewhere, and for a verb \
             the rollout's phase does not allow). Answers the rollout's status after the verb.",
        ))
        .parameter(path_parameter("name"))
        .parameter(verb)
        .request_body(Some(
            RequestBodyBuilder::new()
                .description(Some("Only for `undo`; may be empty"))
                .content(
                    "application/json",
                    json_content(schema_ref::<RolloutUndo>()),
                )
                .build(),
        ))
        .response(
            "200",
            json_response(
                "The rollout's status after the verb",
                schema_ref::<RolloutStatus>(),
            ),
        );

    let version = admin_operation("The server's release, build commit and store kind").response(
        "200",
        json_response(
            "The server's build (`flotilla version`)",
            schema_ref::<ServerVersion>(),
        ),
    );

    let mut collection = PathItem::new(HttpMethod::Get, list);
    collection.merge_operations(PathItem::new(HttpMethod::Post, create));
    collection.parameters = Some(vec![RefOr::T(plural.clone())]);
    let mut item = PathItem::new(HttpMethod::Get, get);
    item.merge_operations(PathItem::new(HttpMethod::Put, replace));
    item.merge_operations(PathItem::new(HttpMethod::Delete, delete));
    item.parameters = Some(vec![RefOr::T(plural), RefOr::T(name)]);

    let webhook = public_operation(
        "GitHub or GitLab push event: fetch the GitRepos following that repository and ref now",
    )
    .description(Some(
        "Authenticated by X-Hub-Signature-256 (GitHub) or X-Gitlab-Token (GitLab) against the \
         Secret git-webhook (type webhook, keys github / gitlab).",
    ))
    .response(
        "202",
        plain_response("Fetches triggered; lists the GitRepos"),
    )
    .response("200", plain_response("Ping or ignored event"))
    .response("401", plain_response("Signature or token does not match"))
    .response("403", plain_response("Webhooks not configured"));

    let register = public_operation("Register a cluster with a registration token")
        .request_body(Some(json_body(schema_ref::<RegisterRequest>())))
        .response(
            "201",
            json_response("Registered", schema_ref::<RegisterResponse>()),
        )
        .response(
            "200",
            json_response("Re-registered", schema_ref::<RegisterResponse>()),
        );
    let sync = OperationBuilder::new()
        .summary(Some(
            "Heartbeat, status changes, and the current desired set when the etag differs",
        ))
        .request_body(Some(json_body(schema_ref::<SyncRequest>())))
        .response("204", plain_response("Unchanged"))
        .response(
            "200",
            json_response(
                "Desired set or resync request",
                schema_ref::<SyncResponse>(),
            ),
        );
    let content = OperationBuilder::new()
        .summary(Some("Immutable bundle content by digest"))
        .parameter(path_parameter("digest"))
        .response(
            "200",
            json_response("JSON array of manifests", schema_ref::<InlineContent>()),
        )
        .response("404", plain_response("Not in this cluster's desired set"));

    PathsBuilder::new()
        .path("/api/v1/apply", PathItem::new(HttpMethod::Post, apply))
        .path("/api/v1/version", PathItem::new(HttpMethod::Get, version))
        .path("/api/v1/{plural}", collection)
        .path("/api/v1/{plural}/{name}", item)
        .path(
            "/api/v1/bundles/{name}/revisions",
            PathItem::new(HttpMethod::Get, revisions),
        )
        .path(
            "/api/v1/bundles/{name}/rollout",
            PathItem::new(HttpMethod::Get, rollout_status),
        )
        .path(
            "/api/v1/bundles/{name}/rollout/{verb}",
            PathItem::new(HttpMethod::Post, rollout_verb),
        )
        .path(
            "/api/v1/webhooks/git",
            PathItem::new(HttpMethod::Post, webhook),
        )
        .path(REGISTER_PATH, PathItem::new(HttpMethod::Post, register))
        .path(SYNC_PATH, PathItem::new(HttpMethod::Post, sync))
        .path(
            format!("{CONTENT_PATH}/{{digest}}"),
            PathItem::new(HttpMethod::Get, content),
        )
        .path(
            "/healthz",
            PathItem::new(
                HttpMethod::Get,
                public_operation_without_summary().response("200", plain_response("Serving")),
            ),
        )
        .path(
            "/livez",
            PathItem::new(
                HttpMethod::Get,
                public_operation("The process answers (a liveness probe; the store is not asked)")
                    .response("200", plain_response("Alive")),
            ),
        )
        .path(
            "/metrics",
            PathItem::new(
                HttpMethod::Get,
                public_operation_without_summary()
                    .response("200", plain_response("Prometheus metrics")),
            ),
        )
        .build()
}

/// An admin operation, with the error responses every admin endpoint can give.
fn admin_operation(summary: &str) -> OperationBuilder {
    [
        ("400", "Malformed request; the message says what to fix"),
        ("401", "Missing or invalid token"),
        ("404", "Not found"),
        ("409", "Conflict (exists, or changed since read)"),
        ("413", "Body too large"),
        ("422", "Invalid document; the message names the field"),
    ]
    .into_iter()
    .fold(
        OperationBuilder::new().summary(Some(summary)),
        |operation, (status, description)| {
            operation.response(
                status,
                json_response(description, schema_ref::<ErrorBody>()),
            )
        },
    )
}

/// An operation that takes no bearer token.
fn public_operation(summary: &str) -> OperationBuilder {
    public_operation_without_summary().summary(Some(summary))
}

fn public_operation_without_summary() -> OperationBuilder {
    OperationBuilder::new().securities(Some(Vec::<SecurityRequirement>::new()))
}

/// The list filters and keyset pagination of `GET /api/v1/{plural}`, from the route's own
/// query type.
fn collection_parameters() -> Vec<Parameter> {
    use utoipa::IntoParams;
    super::list::ListQuery::into_params(|| Some(ParameterIn::Query))
}

/// The query of `POST /api/v1/apply` (`dryRun`), from the route's own query type.
fn apply_parameters() -> Vec<Parameter> {
    use utoipa::IntoParams;
    super::admin::ApplyQuery::into_params(|| Some(ParameterIn::Query))
}

fn path_parameter(name: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

fn schema_ref<T: ToSchema>() -> RefOr<Schema> {
    Ref::from_schema_name(T::name()).into()
}

fn json_content(schema: RefOr<Schema>) -> Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn json_body(schema: RefOr<Schema>) -> RequestBody {
    RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content("application/json", json_content(schema))
        .build()
}

/// A document of any kind, in JSON or YAML.
fn document_body() -> RequestBody {
    RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content("application/json", json_content(any_kind()))
        .content("application/yaml", json_content(any_kind()))
        .build()
}

fn json_response(description: &str, schema: RefOr<Schema>) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", json_content(schema))
        .build()
}

fn plain_response(description: &str) -> Response {
    ResponseBuilder::new().description(description).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_route_and_each_kinds_own_description_are_documented() {
        let document = serde_json::to_value(openapi()).expect("JSON");
        let version = &document["paths"]["/api/v1/version"]["get"];
        assert_eq!(
            version["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ServerVersion"
        );
        assert!(
            version.get("security").is_none(),
            "admin-authenticated: {version}"
        );
        let schemas = &document["components"]["schemas"];
        assert_eq!(
            schemas["ServerVersion"]["properties"]["store"]["$ref"],
            "#/components/schemas/StoreKind"
        );
        assert_eq!(
            schemas["Bundle"]["description"],
            schemas["BundleSpec"]["description"]
        );
        assert!(
            schemas["Bundle"]["properties"]["kind"]["description"].is_string(),
            "{}",
            schemas["Bundle"]
        );
    }

    #[test]
    fn list_parameters_are_the_list_routes_own_query_fields() {
        let parameters = collection_parameters();
        let names: Vec<&str> = parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "labelSelector",
                "state",
                "sort",
                "limit",
                "continue",
                "watch",
                "resourceVersion",
                "fieldSelector"
            ]
        );
        let limit = serde_json::to_value(&parameters[3]).expect("JSON");
        assert_eq!(limit["in"], "query");
        assert_eq!(limit["schema"]["maximum"], 5000, "{limit}");
        assert_eq!(limit["schema"]["default"], 500, "{limit}");
    }

    #[test]
    fn apply_documents_its_dry_run_parameter() {
        let parameters = apply_parameters();
        let names: Vec<&str> = parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["dryRun"]);
    }
}
