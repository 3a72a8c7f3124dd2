//! kubectl's JSONPath templates (`-o jsonpath='{.items[0].status.podIP}'`): literal text and `{...}`
//! expressions with `.field`, `['field']`, `[n]`, `[*]`, `..field`, filters `[?(@.a.b=="v")]`,
//! `{range ...}{end}`, and quoted literals `{"\n"}`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Recursive(String),
    Filter { path: Vec<Step>, op: FilterOp, literal: Option<Value> },
}

#[derive(Debug, Clone, PartialEq)]
enum FilterOp {
    Eq,
    Ne,
    Exists,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template(Vec<Node>);

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = find_close(rest).ok_or_else(|| format!("unclosed '{{' in jsonpath template {text:?}"))?;
                    tokens.push(Token::Expr(rest[1..end].trim().to_string()));
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    tokens.push(Token::Text(rest[..i].to_string()));
                    rest = &rest[i..];
                }
                None => {
                    tokens.push(Token::Text(rest.to_string()));
                    rest = "";
                }
            }
        }
        let mut iter = tokens.into_iter();
        let nodes = build(&mut iter, false)?;
        Ok(Template(nodes))
    }

    /// Renders against `root`. Multiple results of one expression are joined by spaces, as kubectl does.
    pub fn render(&self, root: &Value) -> Result<String, String> {
        let mut out = String::new();
        render_nodes(&self.0, root, &mut out)?;
        Ok(out)
    }
}

enum Token {
    Text(String),
    Expr(String),
}

fn find_close(s: &str) -> Option<usize> {
    let mut in_quote: Option<char> = None;
    for (i, c) in s.char_indices().skip(1) {
        match (in_quote, c) {
            (Some(q), c) if c == q => in_quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => in_quote = Some(c),
            (None, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

fn build(tokens: &mut impl Iterator<Item = Token>, in_range: bool) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while let Some(token) = tokens.next() {
        match token {
            Token::Text(t) => nodes.push(Node::Text(t)),
            Token::Expr(e) if e == "end" => {
                return if in_range { Ok(nodes) } else { Err("{end} without {range}".into()) };
            }
            Token::Expr(e) if e.starts_with("range ") => {
                let path = parse_path(e["range ".len()..].trim())?;
                let body = build(tokens, true)?;
                nodes.push(Node::Range(path, body));
            }
            Token::Expr(e) if (e.starts_with('"') && e.ends_with('"') && e.len() >= 2) => {
                nodes.push(Node::Text(unescape(&e[1..e.len() - 1])));
            }
            Token::Expr(e) => nodes.push(Node::Path(parse_path(&e)?)),
        }
    }
    if in_range { Err("{range} without {end}".into()) } else { Ok(nodes) }
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t").replace("\\\"", "\"")
}

fn parse_path(expr: &str) -> Result<Vec<Step>, String> {
    let bad = |why: &str| format!("invalid jsonpath expression {expr:?}: {why}");
    let mut s = expr.trim();
    s = s.strip_prefix('$').unwrap_or(s);
    s = s.strip_prefix('@').unwrap_or(s);
    let mut steps = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' if chars.get(i + 1) == Some(&'.') => {
                i += 2;
                let start = i;
                while i < chars.len() && !matches!(chars[i], '.' | '[') {
                    i += 1;
                }
                steps.push(Step::Recursive(chars[start..i].iter().collect()));
            }
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && !matches!(chars[i], '.' | '[') {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if name == "*" {
                    steps.push(Step::Wildcard);
                } else if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let close = find_bracket_close(&chars, i).ok_or_else(|| bad("unclosed '['"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                steps.push(parse_bracket(inner.trim()).map_err(|e| bad(&e))?);
                i = close + 1;
            }
            _ if i == 0 => {
                // `{items[0]}` without a leading dot.
                while i < chars.len() && !matches!(chars[i], '.' | '[') {
                    i += 1;
                }
                steps.push(Step::Field(chars[..i].iter().collect()));
            }
            c => return Err(bad(&format!("unexpected {c:?}"))),
        }
    }
    Ok(steps)
}

fn find_bracket_close(chars: &[char], open: usize) -> Option<usize> {
    let (mut depth, mut quote) = (0, None);
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return Ok(Step::Field(q.to_string()));
    }
    if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Ok(Step::Field(q.to_string()));
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|s| s.strip_suffix(')')) {
        let (lhs, op, rhs) = if let Some((l, r)) = filter.split_once("==") {
            (l, FilterOp::Eq, Some(r))
        } else if let Some((l, r)) = filter.split_once("!=") {
            (l, FilterOp::Ne, Some(r))
        } else {
            (filter, FilterOp::Exists, None)
        };
        let lhs = lhs.trim();
        if !lhs.starts_with('@') {
            return Err(format!("filter {filter:?} must start with @"));
        }
        let path = parse_path(lhs)?;
        let literal = rhs.map(|r| {
            let r = r.trim();
            if let Some(s) = r.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Value::String(s.to_string())
            } else if let Some(s) = r.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                Value::String(s.to_string())
            } else {
                serde_json::from_str(r).unwrap_or_else(|_| Value::String(r.to_string()))
            }
        });
        return Ok(Step::Filter { path, op, literal });
    }
    inner.parse::<i64>().map(Step::Index).map_err(|_| format!("unsupported subscript [{inner}]"))
}

fn eval<'a>(steps: &[Step], value: &'a Value) -> Vec<&'a Value> {
    let mut current = vec![value];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => {
                    if let Some(x) = v.get(name) {
                        next.push(x);
                    }
                }
                Step::Index(i) => {
                    if let Value::Array(items) = v {
                        let idx = if *i < 0 { items.len() as i64 + i } else { *i };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| items.get(i)) {
                            next.push(x);
                        }
                    }
                }
                Step::Wildcard => match v {
                    Value::Array(items) => next.extend(items.iter()),
                    Value::Object(map) => next.extend(map.values()),
                    _ => {}
                },
                Step::Recursive(name) => collect_recursive(v, name, &mut next),
                Step::Filter { path, op, literal } => {
                    if let Value::Array(items) = v {
                        for item in items {
                            let found = eval(path, item);
                            let keep = match op {
                                FilterOp::Exists => !found.is_empty(),
                                FilterOp::Eq => found.iter().any(|f| Some(*f) == literal.as_ref()),
                                FilterOp::Ne => !found.iter().any(|f| Some(*f) == literal.as_ref()),
                            };
                            if keep {
                                next.push(item);
                            }
                        }
                    }
                }
            }
        }
        current = next;
    }
    current
}

fn collect_recursive<'a>(v: &'a Value, name: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            if let Some(x) = map.get(name) {
                out.push(x);
            }
            for child in map.values() {
                collect_recursive(child, name, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|c| collect_recursive(c, name, out)),
        _ => {}
    }
}

/// Paths are evaluated against the current value: the root at top level, the item inside `{range}`.
fn render_nodes(nodes: &[Node], cur: &Value, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(steps) => {
                let results = eval(steps, cur);
                let rendered: Vec<String> = results.iter().map(|v| scalar(v)).collect();
                out.push_str(&rendered.join(" "));
            }
            Node::Range(steps, body) => {
                for item in eval(steps, cur) {
                    let items: Vec<&Value> = match item {
                        Value::Array(a) if matches!(steps.last(), Some(Step::Field(_))) => a.iter().collect(),
                        other => vec![other],
                    };
                    for it in items {
                        render_nodes(body, it, out)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn guide_expressions() {
        let list = json!({"items": [{"status": {"podIP": "172.20.2.178"}}, {"status": {"podIP": "172.20.1.5"}}]});
        assert_eq!(render("{.items[0].status.podIP}", &list), "172.20.2.178");
        assert_eq!(render("{.items[*].status.podIP}", &list), "172.20.2.178 172.20.1.5");
        let svc = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.241"}]}}});
        assert_eq!(render("{.status.loadBalancer.ingress[0].ip}", &svc), "192.168.10.241");
        assert_eq!(render("ip={.status.loadBalancer.ingress[0].ip}!", &svc), "ip=192.168.10.241!");
    }

    #[test]
    fn filters_range_and_literals() {
        let pool = json!({"status": {"conditions": [
            {"type": "cilium.io/IPsAvailable", "message": "5"},
            {"type": "cilium.io/PoolConflict", "status": "False"}]}});
        assert_eq!(render(r#"{.status.conditions[?(@.type=="cilium.io/IPsAvailable")].message}"#, &pool), "5");
        let list = json!({"items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]});
        assert_eq!(render(r#"{range .items[*]}{.metadata.name}{"\n"}{end}"#, &list), "a\nb\n");
        assert_eq!(render("{..name}", &list), "a b");
        assert_eq!(render("{.items[-1].metadata.name}", &list), "b");
    }

    #[test]
    fn errors() {
        assert!(Template::parse("{.items[0}").is_err());
        assert!(Template::parse("{range .items[*]}{.x}").is_err());
        assert!(Template::parse("{end}").is_err());
        assert!(Template::parse("{.a[x]}").is_err());
    }
}
