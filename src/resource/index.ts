export { bearerChallenge, type Challenge } from './challenge.ts';
export { createBearerVerifier, type AccessTokenClaims, type BearerResult, type BearerVerifier } from './bearer.ts';
export { metadataUrl, protectedResourceMetadata, PRM_PREFIX } from './metadata.ts';
