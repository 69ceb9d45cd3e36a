fn main() {
    eprintln!("select: not built yet");
    std::process::exit(2);
}
