/** Where the app keeps profile passwords: the OS keychain through safeStorage, or plain text when there is none, and the UI is told which. */
import type { SecretBox } from '../core/profiles';

/** The part of Electron's safeStorage the shell uses. */
export interface SafeStorageLike {
  isEncryptionAvailable(): boolean;
  getSelectedStorageBackend?(): string;
  encryptString(plain: string): Buffer;
  decryptString(encrypted: Buffer): string;
}

const PLAIN = 'plain:';

/**
 * Without an OS keychain (safeStorage unavailable, or Linux's `basic_text` backend, which only obfuscates) the passwords
 * are written as they are, marked so, and the profiles say `plain-text` so the UI can warn; saved profiles keep working.
 */
export function osSecretBox(safeStorage: SafeStorageLike, platform: NodeJS.Platform): SecretBox {
  const available = safeStorage.isEncryptionAvailable();
  const encrypted = available && !(platform === 'linux' && safeStorage.getSelectedStorageBackend?.() === 'basic_text');
  return {
    kind: encrypted ? 'os-encrypted' : 'plain-text',
    seal: (secret) => (encrypted ? safeStorage.encryptString(secret).toString('base64') : `${PLAIN}${secret}`),
    open(sealed) {
      if (sealed.startsWith(PLAIN)) return sealed.slice(PLAIN.length);
      if (!safeStorage.isEncryptionAvailable()) return '';
      try {
        return safeStorage.decryptString(Buffer.from(sealed, 'base64'));
      } catch {
        // Sealed by another keychain or user: the password has to be typed again.
        return '';
      }
    },
  };
}
