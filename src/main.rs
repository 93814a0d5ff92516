use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    aws_access_operator::controller::memory::tune_allocator();
    // One TLS provider for kube and AWS alike; installing it first avoids rustls picking one
    // at random when more than one is linked.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    aws_access_operator::cli::main(aws_access_operator::cli::Cli::parse()).await
}
