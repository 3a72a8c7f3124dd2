//! Prints the entries of every pinned map and the number of pinned links of one node's datapath:
//! `map-entries /sys/fs/bpf/cilia/<lab>/<node>` → `cilia_ct4_global 12` lines, then `links N`.

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: map-entries PIN_DIR");
        std::process::exit(2);
    };
    let dir = std::path::Path::new(&dir);
    match datapath::inventory::map_counts(dir) {
        Ok(counts) => {
            for c in counts {
                println!("{} {}", c.name, c.entries);
            }
            println!("links {}", datapath::inventory::link_pins(dir));
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
