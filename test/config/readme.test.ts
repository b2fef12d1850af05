import t from 'tap';
import { readmeWithReference, readReadme } from '../support/config-reference.js';

t.test("the README's configuration reference is the schema's (run `npm run docs` after changing a key)", async (t) => {
  const readme = readReadme();
  t.equal(readme, readmeWithReference(readme));
});
