//! `cilia get KIND [NAME...] [-n NS|-A] [-l SEL] [--field-selector F] [-o FORMAT]`.

use anyhow::{Result, bail};
use api::{FieldSelector, Object, ObjectRef, ResourceKind, Selector};
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

    let single = names.len() == 1;
    let mut items: Vec<Object> = Vec::new();
    let mut missing = Vec::new();
    if names.is_empty() {
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
    let wide = args.output == Format::Wide;
    let now = chrono::Utc::now();
    let mut headers = table::headers(kind, wide);
    let ns_column = table::with_namespace(kind, args.all_namespaces);
    if ns_column {
        headers.insert(0, "NAMESPACE");
    }
    if args.show_labels {
        headers.push("LABELS");
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|o| {
            let mut row = table::row(kind, o, wide, now);
            if ns_column {
                row.insert(0, o.namespace().unwrap_or_default().to_string());
            }
            if args.show_labels {
                let labels: Vec<String> = o.metadata.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                row.push(if labels.is_empty() { "<none>".into() } else { labels.join(",") });
            }
            row
        })
        .collect();
    print!("{}", table::render(&headers, &rows));
}

fn list_value(items: &[Object]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items.iter().map(Object::to_value).collect::<Vec<_>>(),
        "metadata": {"resourceVersion": ""},
    })
}
