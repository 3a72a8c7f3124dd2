//! `lab-supervise NAME`: the lab supervisor without the `cilia` CLI, the same code as
//! `cilia lab supervise --lab NAME`. The crate's tests and timing example start labs with it.

fn main() {
    let Some(name) = std::env::args().nth(1) else {
        eprintln!("usage: lab-supervise NAME");
        std::process::exit(2);
    };
    if let Err(e) = lab::run_supervisor(&name) {
        eprintln!("lab-supervise {name}: {}", lab::error::Chain(&e));
        std::process::exit(1);
    }
}
