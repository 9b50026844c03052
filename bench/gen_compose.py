#!/usr/bin/env python3
"""Write a realistic Compose file with N services, for benchmarking `config`.

Usage: gen_compose.py N OUT

Every service uses the features a real project does: interpolated image tags, command,
environment (list and map forms), ports, named and bind volumes, depends_on on earlier
services (short and long forms), networks, a healthcheck, labels, and an `x-` extension
pulled in through YAML anchors and merge keys. The file is also valid for
docker-compose 1.29 (Compose Specification schema, no `version` key), so both tools
can be timed on the same input. Standard library only.
"""

import sys

KINDS = ("web", "api", "worker", "cache", "db")
NETWORK_COUNT = 8
VOLUME_COUNT = 16
FIRST_HOST_PORT = 20000

HEADER = """\
x-common: &common
  restart: unless-stopped
  logging:
    driver: json-file
    options:
      max-size: "10m"
      max-file: "3"
  stop_grace_period: 20s

x-healthcheck: &healthcheck
  interval: 30s
  timeout: 5s
  retries: 3
  start_period: 10s

"""


def service_name(index):
    return f"{KINDS[index % len(KINDS)]}{index}"


def dependencies(index):
    """Up to two earlier services: the previous one and one halfway back."""
    if index == 0:
        return []
    deps = {index - 1, index // 2}
    return sorted(deps)


def environment_lines(index):
    if index % 2 == 0:
        return [
            "    environment:",
            f"      - SERVICE_INDEX={index}",
            "      - LOG_LEVEL=${LOG_LEVEL:-info}",
            "      - DATABASE_URL=postgres://app:${DB_PASSWORD:-secret}@db:5432/app",
            "      - FEATURE_FLAG",
        ]
    return [
        "    environment:",
        f"      SERVICE_INDEX: \"{index}\"",
        "      LOG_LEVEL: ${LOG_LEVEL:-info}",
        "      CACHE_TTL: 300",
        "      DEBUG: \"false\"",
    ]


def depends_on_lines(index):
    deps = dependencies(index)
    if not deps:
        return []
    if index % 3 == 0:
        lines = ["    depends_on:"]
        for dep in deps:
            lines += [
                f"      {service_name(dep)}:",
                "        condition: service_healthy",
            ]
        return lines
    return ["    depends_on:"] + [f"      - {service_name(dep)}" for dep in deps]


def label_lines(index):
    if index % 2 == 0:
        return [
            "    labels:",
            f"      com.example.service: \"{service_name(index)}\"",
            "      com.example.tier: backend",
        ]
    return [
        "    labels:",
        f"      - com.example.service={service_name(index)}",
        "      - com.example.tier=frontend",
    ]


def service_lines(index):
    name = service_name(index)
    kind = KINDS[index % len(KINDS)]
    lines = [
        f"  {name}:",
        "    <<: *common",
        f"    image: ${{REGISTRY:-docker.io/library}}/{kind}:${{TAG:-1.{index % 10}}}",
        f"    container_name: bench-{name}",
        "    command: [\"sh\", \"-c\", \"echo $$HOSTNAME && exec sleep infinity\"]",
        "    working_dir: /srv",
    ]
    lines += environment_lines(index)
    lines += [
        "    ports:",
        f"      - \"${{BIND_IP:-127.0.0.1}}:{FIRST_HOST_PORT + index}:80\"",
        "      - \"9090/udp\"",
        "    volumes:",
        f"      - vol{index % VOLUME_COUNT}:/var/lib/data",
        f"      - ./config/{name}:/etc/app:ro",
        "      - type: tmpfs",
        "        target: /tmp",
        "    networks:",
        f"      - net{index % NETWORK_COUNT}",
        f"      - net{(index + 1) % NETWORK_COUNT}",
        "    healthcheck:",
        "      <<: *healthcheck",
        "      test: [\"CMD-SHELL\", \"wget -qO- http://localhost/ || exit 1\"]",
    ]
    lines += depends_on_lines(index)
    lines += label_lines(index)
    return lines


def top_level_lines():
    lines = ["", "networks:"]
    for i in range(NETWORK_COUNT):
        lines += [f"  net{i}:", "    driver: bridge"]
        if i == 0:
            lines += ["    labels:", "      com.example.network: default"]
    lines += ["", "volumes:"]
    for i in range(VOLUME_COUNT):
        lines += [f"  vol{i}:"]
        if i % 2 == 0:
            lines += ["    driver: local"]
    return lines


def render(count):
    lines = ["services:"]
    for index in range(count):
        lines += service_lines(index)
    lines += top_level_lines()
    return HEADER + "\n".join(lines) + "\n"


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: gen_compose.py N OUT\n")
        return 2
    try:
        count = int(argv[1])
    except ValueError:
        sys.stderr.write(f"gen_compose.py: N must be an integer, got {argv[1]!r}\n")
        return 2
    if count < 1 or count > 40000:
        sys.stderr.write("gen_compose.py: N must be between 1 and 40000 (host ports)\n")
        return 2
    with open(argv[2], "w", encoding="utf-8") as out:
        out.write(render(count))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
