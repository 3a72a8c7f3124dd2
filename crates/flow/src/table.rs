//! Hubble's `-o table` output: a header and one row per flow, the columns aligned as Go's
//! `text/tabwriter` aligns them in `hubble/pkg/printer` (`tabwriter.NewWriter(w, 2, 0, 3, ' ',
//! 0)`: each column as wide as its widest cell plus 3 spaces, the last column not padded).
//!
//! The columns are TIMESTAMP, NODE (with `--print-node-name`), SOURCE, DESTINATION, TYPE, VERDICT
//! and SUMMARY. Unlike the compact line, SOURCE and DESTINATION are the flow's own: a reply is
//! not turned around, since the header names each side. Aligning needs every row first, so a
//! table is never followed.

use crate::compact::{event_type_text, host_names, stamp_milli};
use crate::model::Flow;
use crate::summary::summary;

/// Go tabwriter's `padding`: spaces after the widest cell of a column.
const PADDING: usize = 3;
/// Go tabwriter's `minwidth`: no column is narrower, padding included.
const MIN_WIDTH: usize = 2;

/// The table of `flows` with its header, each line ending in a newline; empty for no flows (as
/// Hubble, which prints the header with the first flow).
pub fn table(flows: &[Flow], print_node_name: bool) -> String {
    if flows.is_empty() {
        return String::new();
    }
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(flows.len() + 1);
    let mut header = vec!["TIMESTAMP"];
    if print_node_name {
        header.push("NODE");
    }
    header.extend(["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]);
    rows.push(header.into_iter().map(str::to_string).collect());
    for flow in flows {
        let (src, dst) = host_names(flow);
        let mut row = vec![stamp_milli(&flow.time)];
        if print_node_name {
            row.push(flow.node_name.clone());
        }
        row.extend([src, dst, event_type_text(flow), flow.verdict.name().to_string(), summary(flow)]);
        rows.push(row);
    }
    align(&rows)
}

/// Pads every cell but the last of each row to its column's width.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        // The last cell of a row is not tab-terminated: tabwriter leaves it out of the column.
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + PADDING);
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let width = widths[i].max(MIN_WIDTH);
                out.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{curl_to_webpod, drop_no_backend};

    #[test]
    fn golden_table() {
        let mut reply = curl_to_webpod();
        std::mem::swap(&mut reply.source, &mut reply.destination);
        if let Some(ip) = &mut reply.ip {
            std::mem::swap(&mut ip.source, &mut ip.destination);
        }
        reply.l4 = Some(crate::model::Layer4::Tcp {
            source_port: 80,
            destination_port: 40372,
            flags: crate::model::TcpFlags::from_header_bits(0x12),
        });
        reply.destination_service = None;
        reply.is_reply = Some(true);
        let got = table(&[curl_to_webpod(), reply, drop_no_backend()], false);
        let want = "\
TIMESTAMP             SOURCE                               DESTINATION                          TYPE                        VERDICT     SUMMARY
Aug  9 14:06:08.749   default/curl-pod:40372               default/webpod-697b545f57-lq7nw:80   to-overlay                  FORWARDED   TCP Flags: ACK, FIN
Aug  9 14:06:08.749   default/webpod-697b545f57-lq7nw:80   default/curl-pod:40372               to-overlay                  FORWARDED   TCP Flags: SYN, ACK
Aug  9 14:07:01.002   default/curl-pod:51200               default/nobackend:80                 Service backend not found   DROPPED     TCP Flags: SYN
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn node_column_with_print_node_name() {
        let got = table(&[curl_to_webpod(), drop_no_backend()], true);
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("TIMESTAMP             NODE      SOURCE "), "{got}");
        assert!(lines[1].starts_with("Aug  9 14:06:08.749   k8s-w1    default/curl-pod:40372 "), "{got}");
        assert!(lines[2].starts_with("Aug  9 14:07:01.002   k8s-ctr   default/curl-pod:51200 "), "{got}");
    }

    #[test]
    fn no_flows_no_header() {
        assert_eq!(table(&[], false), "");
    }
}
