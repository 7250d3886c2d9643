#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(k6_timestream::cli::main_with_args(
        std::env::args_os().collect(),
    ));
}
