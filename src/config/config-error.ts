/** One thing wrong with a configuration, located by key path and, when known, by file position. */
export interface ConfigProblem {
  /** Key path such as `services.demo.upstream` or `identity_providers[0].issuer`; '' for the file as a whole. */
  readonly path: string;
  readonly message: string;
  /** 1-based position in the YAML file, when the problem can be traced to one. */
  readonly line?: number;
  readonly column?: number;
}

/** A key path as segments: object keys are strings, array indexes numbers. */
export type KeyPath = ReadonlyArray<string | number>;

/**
 * The configuration could not be loaded. Carries every problem found, never just the first,
 * so an operator can fix the file in one pass. `format()` is what the CLI prints: the
 * problems, without a stack trace.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** Stable internal error code. */
  readonly code = 'CONFIG_INVALID';
  /** Where the configuration came from: a file path, or a label for text or objects built in code. */
  readonly source: string;
  readonly problems: readonly ConfigProblem[];

  constructor(source: string, problems: readonly ConfigProblem[]) {
    super(formatProblems(source, problems));
    this.source = source;
    this.problems = problems;
  }

  /** `Invalid configuration in <source>:` followed by one `  - <path>: <message>` line per problem. */
  format(): string {
    return formatProblems(this.source, this.problems);
  }
}

function formatProblems(source: string, problems: readonly ConfigProblem[]): string {
  const lines = problems.map((problem) => `  - ${describeProblem(problem)}`);
  return [`Invalid configuration in ${source}:`, ...lines].join('\n');
}

function describeProblem({ path, message, line, column }: ConfigProblem): string {
  const position = line === undefined ? '' : column === undefined ? `line ${line}` : `line ${line}, column ${column}`;
  if (path === '') return position === '' ? message : `${position}: ${message}`;
  return position === '' ? `${path}: ${message}` : `${path}: ${message} (${position})`;
}

const plainKey = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;

/** Renders key segments as `a.b[0].c`; keys that are not plain words are quoted: `a["x.y"]`. */
export function formatKeyPath(path: KeyPath): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else if (plainKey.test(segment)) text += text === '' ? segment : `.${segment}`;
    else text += `[${JSON.stringify(segment)}]`;
  }
  return text;
}
