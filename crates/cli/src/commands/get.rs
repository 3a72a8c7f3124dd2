//! `cilia get KIND [NAME...] [-n NS|-A] [-l SEL] [--field-selector F] [-o FORMAT] [-w]`.

use anyhow::{Result, bail};
use api::{FieldSelector, Object, ObjectRef, ResourceKind, Selector, kinds, types::EndpointSlice};
use serde_json::{Value, json};

use crate::{
    context::Ctx,
    output::{jsonpath::Template, table},
};

/// `-o` formats kubectl has that cilia prints.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
    JsonPath(String),
}

impl Format {
    pub fn parse(s: Option<&str>) -> Result<Self> {
        Ok(match s {
            None => Format::Table,
            Some("wide") => Format::Wide,
            Some("json") => Format::Json,
            Some("yaml") => Format::Yaml,
            Some("name") => Format::Name,
            Some(other) => match other.strip_prefix("jsonpath=") {
                Some(t) => Format::JsonPath(t.to_string()),
                None => bail!(
                    "unable to match a printer suitable for the output format {other:?}, allowed formats are: json, jsonpath, name, wide, yaml"
                ),
            },
        })
    }
}

pub struct GetArgs<'a> {
    pub resource: &'a [String],
    pub all_namespaces: bool,
    pub selector: Option<&'a str>,
    pub field_selector: Option<&'a str>,
    pub output: Format,
    pub show_labels: bool,
    /// After the list, print each change until interrupted (see [`super::watch`]).
    pub watch: bool,
    /// With `watch`: say what happened to each object (kubectl's `--output-watch-events`).
    pub output_watch_events: bool,
}

pub async fn run(ctx: &Ctx, args: GetArgs<'_>) -> Result<()> {
    let (kind, names) = crate::context::parse_kind_and_names(args.resource)?;
    let selector = match args.selector {
        Some(s) => Selector::parse(s)?,
        None => Selector::everything(),
    };
    let fields = match args.field_selector {
        Some(f) => FieldSelector::parse(f)?,
        None => FieldSelector::default(),
    };
    let template = match &args.output {
        Format::JsonPath(t) => {
            Some(Template::parse(t).map_err(|e| anyhow::anyhow!("error parsing jsonpath {t}: {e}"))?)
        }
        _ => None,
    };
    if args.watch {
        let query = super::watch::Query { kind, names, selector, fields };
        return super::watch::run(ctx, query, &args, template.as_ref()).await;
    }
    if args.output_watch_events {
        bail!("--output-watch-events needs --watch");
    }

    let single = names.len() == 1;
    let mut items: Vec<Object> = Vec::new();
    let mut missing = Vec::new();
    if std::ptr::eq(kind, &kinds::ENDPOINTS) {
        let ns = if args.all_namespaces { None } else { Some(ctx.namespace.as_str()) };
        let slices = ctx.store.list(&kinds::ENDPOINT_SLICE, ns, &Selector::everything()).await?;
        let derived = endpoints_from_slices(&slices.items);
        if names.is_empty() {
            items = derived.into_iter().filter(|o| selector.matches(&o.metadata.labels) && fields.matches(o)).collect();
        } else {
            for name in &names {
                match derived.iter().find(|o| o.name() == name) {
                    Some(o) => items.push(o.clone()),
                    None => missing.push(name.clone()),
                }
            }
        }
    } else if names.is_empty() {
        let ns = if args.all_namespaces || !kind.namespaced { None } else { Some(ctx.namespace.as_str()) };
        let list = ctx.store.list(kind, ns, &selector).await?;
        items = list.items.into_iter().filter(|o| fields.matches(o)).collect();
    } else {
        for name in &names {
            match ctx.store.get(&ObjectRef::new(kind, Some(&ctx.namespace), name)).await? {
                Some(o) => items.push(o),
                None => missing.push(name.clone()),
            }
        }
    }

    match (&args.output, &template) {
        (_, Some(t)) => {
            let value = if single && items.len() == 1 { items[0].to_value() } else { list_value(&items) };
            print!("{}", t.render(&value).map_err(|e| anyhow::anyhow!("error executing jsonpath: {e}"))?);
        }
        (Format::Json, _) => {
            let value = if single && items.len() == 1 { items[0].to_value() } else { list_value(&items) };
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        (Format::Yaml, _) => {
            let value = if single && items.len() == 1 { items[0].to_value() } else { list_value(&items) };
            print!("{}", serde_saphyr::to_string(&value)?);
        }
        (Format::Name, _) => {
            for o in &items {
                println!("{}/{}", kind.name_prefix(), o.name());
            }
        }
        (Format::Table | Format::Wide, _) => {
            print_table(kind, &items, &args, &ctx.namespace, names.is_empty());
        }
        (Format::JsonPath(_), None) => unreachable!("templates are parsed above"),
    }
    if !missing.is_empty() {
        for name in &missing {
            eprintln!("Error from server (NotFound): {} \"{name}\" not found", kind.qualified_plural());
        }
        std::process::exit(1);
    }
    Ok(())
}

fn print_table(kind: &ResourceKind, items: &[Object], args: &GetArgs<'_>, namespace: &str, listing: bool) {
    if items.is_empty() {
        if listing {
            if kind.namespaced && !args.all_namespaces {
                eprintln!("No resources found in {namespace} namespace.");
            } else {
                eprintln!("No resources found");
            }
        }
        return;
    }
    let headers = table_headers(kind, args);
    let now = chrono::Utc::now();
    let rows: Vec<Vec<String>> = items.iter().map(|o| table_row(kind, o, args, now)).collect();
    print!("{}", table::render(&headers, &rows));
}

/// The table's columns for `args`: the kind's, with NAMESPACE first under `-A` and LABELS last
/// under `--show-labels`.
pub fn table_headers(kind: &ResourceKind, args: &GetArgs<'_>) -> Vec<&'static str> {
    let mut headers = table::headers(kind, args.output == Format::Wide);
    if table::with_namespace(kind, args.all_namespaces) {
        headers.insert(0, "NAMESPACE");
    }
    if args.show_labels {
        headers.push("LABELS");
    }
    headers
}

/// One row under [`table_headers`].
pub fn table_row(
    kind: &ResourceKind,
    o: &Object,
    args: &GetArgs<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let mut row = table::row(kind, o, args.output == Format::Wide, now);
    if table::with_namespace(kind, args.all_namespaces) {
        row.insert(0, o.namespace().unwrap_or_default().to_string());
    }
    if args.show_labels {
        let labels: Vec<String> = o.metadata.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        row.push(if labels.is_empty() { "<none>".into() } else { labels.join(",") });
    }
    row
}

/// One Endpoints object per Service that has EndpointSlices: `subsets` of ready and not-ready
/// addresses with the slices' ports, as Kubernetes' Endpoints controller writes them.
pub fn endpoints_from_slices(slices: &[Object]) -> Vec<Object> {
    let mut by_service: std::collections::BTreeMap<(String, String), Vec<(EndpointSlice, &Object)>> =
        Default::default();
    for obj in slices {
        let (Some(service), Ok(slice)) =
            (obj.metadata.labels.get(api::labels::SERVICE_NAME), obj.to_typed::<EndpointSlice>())
        else {
            continue;
        };
        let ns = obj.namespace().unwrap_or("default").to_string();
        by_service.entry((ns, service.clone())).or_default().push((slice, obj));
    }
    let mut out = Vec::new();
    for ((ns, service), slices) in by_service {
        let mut ep = Object::new(&kinds::ENDPOINTS, Some(&ns), &service);
        ep.metadata.labels = slices[0]
            .1
            .metadata
            .labels
            .iter()
            .filter(|(k, _)| *k != api::labels::SERVICE_NAME && !k.starts_with(api::labels::ENDPOINT_SLICE_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ep.metadata.creation_timestamp = slices.iter().filter_map(|(_, o)| o.metadata.creation_timestamp.clone()).min();
        let mut subsets = Vec::new();
        for (slice, _) in &slices {
            let address = |e: &api::types::Endpoint, ip: &String| {
                let mut a = json!({"ip": ip});
                if let Some(node) = &e.node_name {
                    a["nodeName"] = json!(node);
                }
                if let Some(target) = &e.target_ref {
                    a["targetRef"] = target.clone();
                }
                a
            };
            let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
            for e in &slice.endpoints {
                for ip in &e.addresses {
                    if e.conditions.ready != Some(false) {
                        ready.push(address(e, ip));
                    } else {
                        not_ready.push(address(e, ip));
                    }
                }
            }
            if ready.is_empty() && not_ready.is_empty() {
                continue;
            }
            let ports: Vec<Value> = slice
                .ports
                .iter()
                .map(|p| {
                    let mut v = json!({"port": p.port, "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into())});
                    if let Some(name) = p.name.as_ref().filter(|n| !n.is_empty()) {
                        v["name"] = json!(name);
                    }
                    v
                })
                .collect();
            let mut subset = json!({"ports": ports});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            subsets.push(subset);
        }
        if !subsets.is_empty() {
            ep.body.insert("subsets".into(), json!(subsets));
        }
        out.push(ep);
    }
    out
}

fn list_value(items: &[Object]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items.iter().map(Object::to_value).collect::<Vec<_>>(),
        "metadata": {"resourceVersion": ""},
    })
}
