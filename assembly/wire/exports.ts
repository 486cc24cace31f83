// Every header's accessors, checks and emitters, exported so golden-byte
// tests and the fuzz harness exercise the same code the pipeline inlines.
export * from "./bytes";
export * from "./checksum";
export * from "./ethernet";
export * from "./arp";
export * from "./ipv4";
export * from "./udp";
export * from "./tcp";
export * from "./icmp";
export * from "./vxlan";
export * from "./ipip";
