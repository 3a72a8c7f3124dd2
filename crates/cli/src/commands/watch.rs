//! `cilia get -w`: the matching objects, then one line per change until interrupted, as kubectl's
//! `get --watch`.
//!
//! Changes come from an [`Informer`], the watch cache the controllers use: a broken watch (the
//! datastore restarted, the connection dropped) resumes where it stopped, so no change is missed
//! or printed twice. Names and selectors are applied here, to each change: an object that stops
//! matching is reported as deleted, one that starts matching as added, as the API server does for a
//! watch with a selector.

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use api::{FieldSelector, Object, ResourceKind, Selector, kinds};
use serde_json::json;
use store::{Change, Informer, WatchEventType};

use super::get::{Format, GetArgs, table_headers, table_row};
use crate::{
    context::Ctx,
    output::{jsonpath::Template, table},
};

/// What `get` was asked for.
pub struct Query {
    pub kind: &'static ResourceKind,
    /// Only these objects; all when empty.
    pub names: Vec<String>,
    pub selector: Selector,
    pub fields: FieldSelector,
}

impl Query {
    fn matches(&self, o: &Object) -> bool {
        (self.names.is_empty() || self.names.iter().any(|n| n == o.name()))
            && self.selector.matches(&o.metadata.labels)
            && self.fields.matches(o)
    }
}

/// Namespace and name: what identifies an object of one kind.
type Key = (Option<String>, String);

fn key(o: &Object) -> Key {
    (o.namespace().map(str::to_string), o.name().to_string())
}

pub async fn run(ctx: &Ctx, query: Query, args: &GetArgs<'_>, template: Option<&Template>) -> Result<()> {
    if std::ptr::eq(query.kind, &kinds::ENDPOINTS) {
        bail!("endpoints are derived from EndpointSlices here and cannot be watched; watch endpointslices instead");
    }
    let namespace = if args.all_namespaces || !query.kind.namespaced { None } else { Some(ctx.namespace.as_str()) };
    let informer = Informer::start(ctx.store.clone(), query.kind, namespace);
    informer.wait_synced().await;
    let mut changes = informer.subscribe();
    let mut printer = Printer { kind: query.kind, args, template, widths: None, printed_any: false };
    // The objects printed as present, to tell a change that makes an object match (or stop
    // matching) the query from a change of one that still does.
    let mut shown: BTreeSet<Key> = BTreeSet::new();
    while let Some(change) = changes.recv().await {
        match change {
            // The first item, and a new start after falling behind: the whole current state.
            Change::Resync(objects) => {
                let matching: Vec<Object> = objects.into_iter().filter(|o| query.matches(o)).collect();
                shown = matching.iter().map(key).collect();
                for o in &matching {
                    printer.print(WatchEventType::Added, o, &matching)?;
                }
            }
            Change::Event(event) => {
                let k = key(&event.object);
                let was = shown.contains(&k);
                let is = event.type_ != WatchEventType::Deleted && query.matches(&event.object);
                let type_ = match (was, is) {
                    (false, false) => continue,
                    (false, true) => WatchEventType::Added,
                    (true, true) => WatchEventType::Modified,
                    (true, false) => WatchEventType::Deleted,
                };
                if is {
                    shown.insert(k);
                } else {
                    shown.remove(&k);
                }
                printer.print(type_, &event.object, std::slice::from_ref(&event.object))?;
            }
        }
    }
    bail!("the watch of {} ended", query.kind.plural)
}

struct Printer<'a> {
    kind: &'static ResourceKind,
    args: &'a GetArgs<'a>,
    template: Option<&'a Template>,
    /// The table's column widths, set when the header is printed, so that later rows line up
    /// under it.
    widths: Option<Vec<usize>>,
    /// Whether a YAML document was printed (the next one needs a separator).
    printed_any: bool,
}

impl Printer<'_> {
    /// Prints `o`, which changed by `type_`. `batch` is the set it arrived with: a table's header
    /// is sized to fit the first batch.
    fn print(&mut self, type_: WatchEventType, o: &Object, batch: &[Object]) -> Result<()> {
        let events = self.args.output_watch_events;
        let value = || if events { json!({"type": type_.to_string(), "object": o.to_value()}) } else { o.to_value() };
        match (&self.args.output, self.template) {
            (_, Some(t)) => {
                let rendered = t.render(&value()).map_err(|e| anyhow::anyhow!("error executing jsonpath: {e}"))?;
                println!("{rendered}");
            }
            (Format::Json, _) => println!("{}", serde_json::to_string_pretty(&value())?),
            (Format::Yaml, _) => {
                if self.printed_any {
                    println!("---");
                }
                print!("{}", serde_saphyr::to_string(&value())?);
            }
            (Format::Name, _) => {
                let name = format!("{}/{}", self.kind.name_prefix(), o.name());
                if events { println!("{type_} {name}") } else { println!("{name}") }
            }
            (Format::Table | Format::Wide, _) => self.print_row(type_, o, batch),
            (Format::JsonPath(_), None) => unreachable!("templates are parsed before the watch"),
        }
        self.printed_any = true;
        Ok(())
    }

    fn print_row(&mut self, type_: WatchEventType, o: &Object, batch: &[Object]) {
        let now = chrono::Utc::now();
        let row = |o: &Object, type_: WatchEventType| {
            let mut row = table_row(self.kind, o, self.args, now);
            if self.args.output_watch_events {
                row.insert(0, type_.to_string());
            }
            row
        };
        let widths = self.widths.get_or_insert_with(|| {
            let mut headers = table_headers(self.kind, self.args);
            if self.args.output_watch_events {
                headers.insert(0, "EVENT");
            }
            let rows: Vec<Vec<String>> = batch.iter().map(|o| row(o, WatchEventType::Modified)).collect();
            let widths = table::widths(&headers, &rows);
            let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
            print!("{}", table::render_row(&headers, &widths));
            widths
        });
        print!("{}", table::render_row(&row(o, type_), widths));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_matches_names_labels_and_fields() {
        let mut pod = Object::new(&kinds::POD, Some("default"), "web");
        pod.metadata.labels.insert("app".into(), "web".into());
        let query = |names: &[&str], selector: &str| Query {
            kind: &kinds::POD,
            names: names.iter().map(|n| n.to_string()).collect(),
            selector: Selector::parse(selector).expect("selector"),
            fields: FieldSelector::parse("metadata.name=web").expect("field selector"),
        };
        assert!(query(&[], "app=web").matches(&pod));
        assert!(query(&["web"], "").matches(&pod));
        assert!(!query(&["other"], "").matches(&pod));
        assert!(!query(&[], "app=db").matches(&pod));
    }
}
