import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', '**/*.tmp.ts', 'loadtest/results/**'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Streams are joined with pipeline() or proto's pump(), never bare .pipe(): .pipe() neither
      // propagates errors nor cleans up.
      'no-restricted-syntax': [
        'error',
        { selector: "CallExpression[callee.property.name='pipe']", message: 'Use pipeline() or pump(), not .pipe().' },
      ],
    },
  },
  {
    // Configuration comes from one loadConfig(env) per program; only main.ts hands it process.env.
    files: ['gateway/src/**/*.ts', 'agent/src/**/*.ts', 'cli/src/**/*.ts', 'proto/src/**/*.ts', 'deploy/**/*.ts'],
    ignores: ['**/main.ts', 'deploy/local/start.ts'],
    rules: {
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'Read configuration in loadConfig(env) only.' }],
    },
  },
);
